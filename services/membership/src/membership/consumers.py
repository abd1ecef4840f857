"""Event handlers of the membership service.

Membership is the source of the register and consumes no other service's
events, so its ``Consumers`` holds no handlers (the runner subscribes to
nothing). It is kept so every service has the same shape.
"""

from __future__ import annotations

from distretto_shared.consumer import Consumers

consumers = Consumers("membership")
