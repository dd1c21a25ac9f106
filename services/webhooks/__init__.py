"""The webhooks service (CONTRACT §13): an outbox in SQL fed from the CDR topic, and a sender
that delivers it signed, retried and in order per record key."""
