"""JobStreams adapters: in-process (embedded mode) and Redis Streams (API and arq workers apart).
The AWS layout has none: followers read the job record (the whole answer at the end)."""

MAX_EVENTS = 10_000  # a job's stream is trimmed to about this many events
KEEP_S = 3_600  # a stream is kept this long after its last event while the job runs
ENDED_KEEP_S = 300  # and this long once the job has ended (late followers, reconnects)
