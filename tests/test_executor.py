"""The executor with real worker processes: exactly-once under forced
stealing, crashed workers, failing handlers, shutdown, bad arguments."""
import os
import signal
import struct
import time

import pytest

from dataplane import DataplaneError, InvalidState, MessageTooLarge, Timeout
from dataplane.executor import POLICIES, Cancelled, Executor, HandlerError, WorkerCrashed

REQ = struct.Struct("<Q")
RUNNING_DIR = "/dev/shm"


def echo(view):
    return view  # a memoryview back: sent straight from the request slot


def checked_echo(view):
    assert isinstance(view, memoryview) and view.readonly
    return b"ok:" + bytes(view)


def faulty(view):
    data = bytes(view)
    if data.startswith(b"raise"):
        raise ValueError(f"bad request {data!r}")
    if data == b"int":
        return 42
    if data == b"none":
        return None
    if data == b"huge":
        return b"x" * (1 << 17)
    if data == b"pid":
        return str(os.getpid()).encode()
    return data


def blocker(view):
    """b"block:<path>" writes this worker's pid to <path>, then hangs."""
    data = bytes(view)
    if data.startswith(b"block:"):
        path = data[6:].decode()
        with open(path + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(path + ".tmp", path)
        time.sleep(120)
    if data.startswith(b"sleep:"):
        time.sleep(float(data[6:]))
    return data


def affinity(view):
    return ",".join(map(str, sorted(os.sched_getaffinity(0)))).encode() + b"|" + str(os.getpid()).encode()


@pytest.fixture
def marker(tmp_path_factory):
    path = os.path.join(RUNNING_DIR, f"dptest-running-{os.getpid()}-{time.monotonic_ns()}")
    yield path
    for p in (path, path + ".tmp"):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def _wait_for_file(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.001)
    return int(open(path).read())


# ------------------------------------------------------------ exactly once --

def test_exactly_once_200k_with_stealing_forced():
    """Every request of one flow lands on one queue; the other worker can
    only help by stealing.  Each of 200,000 ids comes back exactly once,
    with its own payload."""
    n = 200_000
    pack = REQ.pack
    with Executor(echo, workers=2, policy="steal") as ex:
        ids = [ex.submit(pack(i), flow=12345) for i in range(n)]
        seen = bytearray(n)
        count = 0
        for r in ex.results(timeout=120):
            assert r.ok, r.error
            i = REQ.unpack(r.value)[0]
            assert i == ids[i] == r.id, f"result {r.id} carries payload of {i}"
            assert not seen[i], f"request {i} answered twice"
            seen[i] = 1
            count += 1
        assert count == n and all(seen)
        c = ex.counters
        assert c.submitted == c.dispatched == c.completed == n and c.failed == 0
        assert sum(c.taken) == n
        assert c.stolen > 0, "the idle worker never stole"
        assert min(c.taken) == c.stolen  # the other worker's every request was a steal
        assert ex.poll() == []


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_answers_every_request_once(policy):
    n = 3000
    with Executor(checked_echo, workers=3, policy=policy, jbsq_depth=2) as ex:
        ids = {ex.submit(b"%d" % i): i for i in range(n)}
        got = {}
        for r in ex.results(timeout=60):
            assert r.ok, r.error
            assert r.id not in got
            got[r.id] = r.value
        assert got == {rid: b"ok:%d" % i for rid, i in ids.items()}
        c = ex.counters
        assert (c.submitted, c.completed, c.failed) == (n, n, 0)
        if policy == "partitioned" or policy == "jbsq":
            assert c.stolen == 0


def test_call_and_results_interleave():
    with Executor(echo, workers=2) as ex:
        a = ex.submit(b"a")
        assert bytes(ex.call(b"b")) == b"b"
        assert [(r.id, r.value) for r in ex.results(timeout=10)] == [(a, b"a")]


# ----------------------------------------------------------- dead worker --

@pytest.mark.parametrize("policy", ["partitioned", "steal", "jbsq"])
def test_killed_worker_fails_only_its_request(policy, marker):
    """A worker is SIGKILLed in the middle of a request.  That request ends
    as WorkerCrashed; the requests queued behind it (on the dead worker's
    own queue, even when partitioned) are taken by the survivor; nothing
    else is lost, and the executor keeps serving."""
    with Executor(blocker, workers=2, policy=policy, jbsq_depth=4) as ex:
        victim = ex.submit(b"block:" + marker.encode(), flow=7)
        pid = _wait_for_file(marker)
        w = ex.worker_pids.index(pid)
        behind = [ex.submit(b"after-%d" % i, flow=7) for i in range(40)]
        others = [ex.submit(b"other-%d" % i) for i in range(40)]
        time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        results = {}
        for r in ex.results(timeout=30):
            assert r.id not in results, f"request {r.id} answered twice"
            results[r.id] = r
        assert set(results) == {victim, *behind, *others}
        err = results[victim].error
        assert isinstance(err, WorkerCrashed) and not results[victim].ok
        assert err.worker == w and err.pid == pid and err.exitcode == -signal.SIGKILL
        assert f"request {victim}" in str(err)
        assert all(results[i].ok for i in behind + others), [results[i].error for i in behind + others if not results[i].ok]
        c = ex.counters
        assert (c.crashed, c.failed, c.completed) == (1, 1, 80)
        assert ex.live_workers == [1 - w]
        assert ex.call(b"still serving", timeout=10) == b"still serving"


def test_crash_under_load_loses_nothing():
    """Kill a worker at an arbitrary moment of a busy run: every request
    still gets exactly one result, at most the one it was running fails."""
    n = 20_000
    with Executor(faulty, workers=2, policy="steal") as ex:
        ids = [ex.submit(b"req-%d" % i) for i in range(n // 2)]
        os.kill(ex.worker_pids[0], signal.SIGKILL)
        ids += [ex.submit(b"req-%d" % i) for i in range(n // 2, n)]
        results = {}
        for r in ex.results(timeout=60):
            assert r.id not in results
            results[r.id] = r
        assert sorted(results) == ids
        failed = [r for r in results.values() if not r.ok]
        assert len(failed) <= 1 and all(isinstance(r.error, WorkerCrashed) for r in failed)
        assert all(r.value == b"req-%d" % r.id for r in results.values() if r.ok)


def test_all_workers_dead_fails_everything_outstanding(marker):
    with Executor(blocker, workers=1, policy="steal") as ex:
        first = ex.submit(b"block:" + marker.encode())
        pid = _wait_for_file(marker)
        queued = [ex.submit(b"q%d" % i) for i in range(5)]
        os.kill(pid, signal.SIGKILL)
        results = {r.id: r for r in ex.results(timeout=10)}
        assert set(results) == {first, *queued}
        assert all(isinstance(r.error, WorkerCrashed) for r in results.values())
        with pytest.raises(WorkerCrashed):
            ex.submit(b"more")


# ----------------------------------------------------------- bad handler --

def test_raising_handler_fails_only_that_request():
    with Executor(faulty, workers=2) as ex:
        pids = set(ex.worker_pids)
        ids = [ex.submit(b"raise-%d" % i if i % 3 == 0 else b"fine-%d" % i) for i in range(300)]
        results = {r.id: r for r in ex.results(timeout=30)}
        for i, rid in enumerate(ids):
            r = results[rid]
            if i % 3 == 0:
                assert not r.ok and isinstance(r.error, HandlerError)
                assert r.error.type_name == "ValueError" and f"raise-{i}" in str(r.error)
                assert "Traceback" in r.error.remote_traceback
                with pytest.raises(HandlerError):
                    r.unwrap()
            else:
                assert r.ok and r.value == b"fine-%d" % i
        assert set(ex.worker_pids) == pids and len(ex.live_workers) == 2
        assert ex.counters.failed == 100 and ex.counters.crashed == 0
        # The workers that raised are the ones still answering.
        assert int(ex.call(b"pid")) in pids


def test_bad_return_values_are_errors_of_their_request():
    with Executor(faulty, workers=1, max_response=1 << 16) as ex:
        with pytest.raises(HandlerError, match="returned int"):
            ex.call(b"int")
        assert ex.call(b"none") == b""
        with pytest.raises(HandlerError, match="max_response"):
            ex.call(b"huge")
        assert ex.call(b"fine") == b"fine"


# ---------------------------------------------------------- bad arguments --

@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(workers=0), "workers must be"),
        (dict(workers=-3), "workers must be"),
        (dict(workers=1.5), "workers must be"),
        (dict(policy="round-robin"), "unknown policy"),
        (dict(policy="jbsq", jbsq_depth=0), "jbsq_depth"),
        (dict(jbsq_depth=-1), "jbsq_depth"),
        (dict(queue_slots=100), "queue_slots"),
        (dict(policy="partitioned", steal=True), None),
        (dict(policy="central", steal=False), "central"),
        (dict(max_request=-1), "max_request"),
    ],
)
def test_bad_arguments(kwargs, match):
    if match is None:  # a valid combination: partitioned placement plus stealing
        with Executor(echo, **kwargs) as ex:
            assert ex.call(b"x") == b"x"
        return
    with pytest.raises(ValueError, match=match):
        Executor(echo, **kwargs)


def test_bad_handlers():
    with pytest.raises(ValueError, match="handler"):
        Executor(42)
    with pytest.raises(ValueError, match="handler"):
        Executor("no-colon-here")
    with pytest.raises(ImportError):
        Executor("dataplane.no_such_module:fn")


def test_oversized_request_and_closed_executor():
    ex = Executor(echo, workers=1, max_request=100)
    with ex:
        ex.call(b"x" * 100)
        with pytest.raises(MessageTooLarge, match="max_request 100"):
            ex.submit(b"x" * 101)
        assert ex.pending == 0
    with pytest.raises(InvalidState):
        ex.submit(b"x")
    assert isinstance(MessageTooLarge("x"), DataplaneError)


# ------------------------------------------------------- life and death --

def test_graceful_close_finishes_everything_first():
    ex = Executor(blocker, workers=2)
    ids = [ex.submit(b"sleep:0.002") for _ in range(200)]
    ex.close(wait=True)
    got = ex.poll()
    assert sorted(r.id for r in got) == ids and all(r.ok for r in got)
    assert all(not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
               for pid in ex.worker_pids)


def test_close_without_waiting_cancels_what_did_not_run():
    ex = Executor(blocker, workers=1)
    ids = [ex.submit(b"sleep:0.02") for _ in range(50)]
    assert ex.wait(timeout=30)  # one has run: the rest are queued behind the next
    ex.close(wait=False, timeout=10)
    got = {r.id: r for r in ex.poll()}
    assert sorted(got) == ids  # every request has its one result
    cancelled = [r for r in got.values() if not r.ok]
    assert cancelled and all(isinstance(r.error, Cancelled) for r in cancelled)
    assert any(r.ok for r in got.values())


def test_workers_are_pinned_round_robin():
    cpus = sorted(os.sched_getaffinity(0))
    with Executor(affinity, workers=2, policy="partitioned") as ex:
        seen = {}
        for flow in range(64):
            out = ex.call(b"", flow=flow).decode()
            mask, pid = out.split("|")
            seen[int(pid)] = mask
        assert len(seen) == 2
        for w, pid in enumerate(ex.worker_pids):
            assert seen[pid] == str(cpus[w % len(cpus)])


def _cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_workers_sleep_so_more_workers_than_cores_is_fine():
    with Executor(echo, workers=4, policy="steal", spin_us=50) as ex:
        for i in range(2000):  # more processes than cores, still correct
            ex.submit(b"%d" % i)
        assert len(list(ex.results(timeout=30))) == 2000
        time.sleep(0.1)
        before = [_cpu_seconds(p) for p in ex.worker_pids]
        time.sleep(1.0)
        used = sum(_cpu_seconds(p) for p in ex.worker_pids) - sum(before)
        assert used < 0.2, f"idle workers burned {used:.2f} s of CPU in 1 s"
        assert sum(ex.counters.sleeps) > 0


def test_jbsq_holds_back_beyond_its_bound():
    with Executor(blocker, workers=2, policy="jbsq", jbsq_depth=1) as ex:
        for _ in range(10):
            ex.submit(b"sleep:0.01")
        c = ex.counters
        assert c.submitted == 10 and c.dispatched == 2  # one per worker, the rest wait
        assert len(list(ex.results(timeout=30))) == 10


def test_spawned_workers_with_an_importable_handler():
    with Executor("builtins:bytes", workers=2, start_method="spawn", start_timeout=60) as ex:
        assert ex.call(b"spawned") == b"spawned"


def test_results_timeout_raises(marker):
    with Executor(blocker, workers=1) as ex:
        ex.submit(b"sleep:0.5")
        with pytest.raises(Timeout):
            list(ex.results(timeout=0.05))
        with pytest.raises(Timeout):
            ex.call(b"x", timeout=0.05)
        ex.close(wait=False, timeout=5)


def _whoami(req):
    return str(os.getpid()).encode()


@pytest.mark.parametrize("policy", ["partitioned", "jbsq"])
def test_submit_to_a_chosen_worker(policy):
    """A caller that schedules itself (the control plane's gateway) puts each
    request on the queue of the worker it chose; with no stealing, that
    worker runs it."""
    with Executor(_whoami, workers=2, policy=policy) as ex:
        pids = ex.worker_pids
        for w in (0, 1, 1, 0, 1):
            assert ex.call(b"x") in {str(p).encode() for p in pids}  # the policy's own choice still works
            rid = ex.submit(b"x", worker=w)
            got = next(r for r in ex.results(timeout=10) if r.id == rid)
            assert got.unwrap() == str(pids[w]).encode()
        with pytest.raises(ValueError):
            ex.submit(b"x", worker=2)
        with pytest.raises(ValueError):
            ex.submit(b"x", worker=-1)
        with pytest.raises(ValueError):
            ex.submit(b"x", worker=True)


def test_submit_to_a_dead_worker_says_so():
    with Executor(_whoami, workers=2, policy="partitioned") as ex:
        victim = ex.worker_pids[1]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:  # the dispatcher notices on its next collection
            ex.poll()
            try:
                rid = ex.submit(b"x", worker=1)
            except WorkerCrashed as e:
                assert e.worker == 1
                break
            assert time.monotonic() < deadline
            list(ex.results(timeout=10))  # it fails as WorkerCrashed, or runs if submitted before the death was seen
            time.sleep(0.05)
        assert ex.call(b"x", timeout=10) == str(ex.worker_pids[0]).encode()
