"""The people of the register: contacts, their consents, personal data for the newsletter, GDPR export and erasure."""
