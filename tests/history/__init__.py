"""A fault-history checker in the style of Jepsen: run clients under faults, record, then check.

The model
---------
Several writer *processes* append to a few shared streams at once (contention is the point):
single appends and multi-stream `append_many`, 1-3 events each, with every expectation mode
(`ANY`, `STREAM_EXISTS`, `NO_STREAM`, exact versions read just before; some deliberately stale).
Each writer journals every call (`journal.py`) as *invoked* before it, then *ok* (with the
acknowledged versions and positions), *failed* (a definite refusal, `WrongExpectedVersion`, which
wrote nothing) or *unknown* (`StoreUnavailable`, or nothing at all when the process was killed
mid-call). Unknown calls are often retried with the same event ids, as the contract invites;
a killed writer's successor may retry its predecessor's dangling call. One or two readers tail
the log from position 0 with `read_all` and `wait_for_events` and journal every event they get.

Meanwhile a nemesis (`harness._nemesis`) injects faults: SIGKILL of writers (restarted at once),
SIGSTOP/SIGCONT of writers, and whatever the backend adds. Afterwards a fresh store object reads
the whole log (`read_all`, `read_stream` and `stream_version` of every stream) and `checker.check`
decides whether the history is one the store contract allows: every acknowledged event present
exactly once where it was acknowledged, no refused one present, unknown ones at most once and
all-or-nothing, expectations honoured, versions 0, 1, 2, ... per stream, each stream's global
order equal to its version order in every view, and every reader got every event once in
increasing position. The result is one summary line (`Report.summary`) and, on failure, the first
few violations of each kind.

Everything but the faults uses only the public store API (`chronik.open_store(url)`, `append`,
`append_many`, `read_stream`, `read_all`, `wait_for_events`, `head_position`, `stream_version`),
so nothing here knows which backend it runs on.

Plugging in a backend
---------------------
Make a `faults.Backend`: a name, the store URL every process opens (in a place of its own: a new
file, schema, or stream prefix on a fresh server), its faults (`faults.PROCESS_FAULTS` plus the
backend's own, each a small class with `name` and `inject(cluster, rng) -> bool`), optional weights,
and a cleanup. Then `report, summary = run_history(backend, tmp_path)` and assert `report.ok`
(see `test_history.py`). A distributed backend (NATS JetStream, say) would add faults like
"restart a node" or "partition a node away" and nothing else.

`CHRONIK_HISTORY_SECONDS` sets how long the clients run (default `harness.DEFAULT_SECONDS`).
"""
