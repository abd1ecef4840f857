"""The membership lifecycle: approval, status changes, renewals, fee plans, the history."""
