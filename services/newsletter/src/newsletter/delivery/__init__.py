"""The delivery engine: renders campaign mails and sends each exactly once, over a pool of SMTP connections.

Exactly once, also across a crash
---------------------------------
The audience of a campaign is frozen into ``delivery`` rows, one per (campaign, subscriber)
(unique): its first chunk when it starts, the next ones by the engine's freezer while the frozen
rows waiting to be sent fall below a chunk (``campaigns.freeze``). A worker *claims* a batch in one
transaction (``pending → sending`` with a random claim token and ``claimed_at``; PostgreSQL
``FOR UPDATE SKIP LOCKED``), then for each row: renders, and sends over its own SMTP connection.
The outcome (``sent`` with the server's reply) goes to a group committer that writes the
outcomes of all connections in one transaction. The worker does not wait for that commit before
it starts the next message: it sends the next ``MAIL FROM`` and ``RCPT TO`` at once, but waits
for the previous outcome to be durable **before it sends ``DATA``**.

Each claim has a lease row (``delivery_claim``, expiring ``lease_seconds`` after its last
renewal). Every instance's lease keeper renews its own claims four times per lease and takes back
the dead: it deletes an expired lease row and returns that claim's rows to ``pending`` in one
transaction. A process never takes back the claims of its own live workers, however late they
are. The fence: a worker sends ``DATA`` only while its lease is known held (renewed less than 0.8
of a lease ago, else renewed first); if the lease row is gone, another instance has the rows, and
the worker resets the SMTP transaction and sends nothing of that claim. Every outcome write names
the claim token as well, so a late outcome never overwrites the new owner's.

The window, exactly: per connection, at most one message can have been accepted by the server
(``250`` after the final ``.``) without its ``sent`` being durable — from that ``250`` until the
group commit that carries it (the committer's linger, at most ``NEWSLETTER_COMMIT_LINGER_SECONDS``,
40 ms by default, and ended as soon as the connection's next message waits for it; plus the
transaction). The next message of the connection cannot reach
``DATA`` inside that interval, so it cannot be accepted too. If the process dies then, that one
message is sent again after the lease: at most one repeat per connection, as before the
pipelining. SMTP has no two-phase commit, so no sender can close this alone (the deterministic
``Message-ID`` per (campaign, recipient) lets a downstream MTA or the mail catcher drop that
repeat). A crash at any other moment — before ``DATA`` ended, or after the commit — neither
skips nor repeats anyone: a message whose envelope was sent but whose ``DATA`` was not is simply
abandoned by the server when the connection drops. A progress pointer (listmonk) repeats or
skips a whole batch instead.

Outcomes of rows that were never sent (skipped, released on pause, failed to render) are handed
to the committer without waiting: losing one in a crash only sends its row round again after
the lease.

The package: ``rendering`` (templates compiled once per campaign), ``mime`` (the message bytes),
``compose`` (one recipient's message), ``smtp`` (connections and their rate: aiosmtplib opens each
connection, the engine's own protocol writes every message's commands), ``ledger`` (claimed
rows, outcomes, the group commit's statements) and ``engine`` (the workers and the committer).
"""
