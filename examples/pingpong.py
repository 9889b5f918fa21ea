"""Two processes bounce a message through a pair of rings.

    python examples/pingpong.py            # 64 B, 100k round trips
    python examples/pingpong.py 1024 50000

The full benchmark, with the peers side by side, is
``python -m dataplane bench pingpong``.
"""
import os
import sys
import time

from dataplane import Ring


def main(size: int = 64, n: int = 100_000) -> None:
    a, b = f"pp-{os.getpid()}-a", f"pp-{os.getpid()}-b"
    with Ring.create(a, busy_poll=True) as ping, Ring.create(b, busy_poll=True) as pong:
        try:
            if os.fork() == 0:  # the echo side: attaches by name like any other process
                with Ring.attach(a, busy_poll=True) as rx, Ring.attach(b, busy_poll=True) as tx:
                    for _ in range(n):
                        with rx.recv_view() as view:  # zero-copy in, one copy out
                            tx.send(view)
                os._exit(0)
            msg = b"x" * size
            t0 = time.perf_counter()
            for _ in range(n):
                ping.send(msg)
                pong.recv()
            dt = time.perf_counter() - t0
            os.wait()
            print(f"{n} round trips of {size} B: mean {dt / n * 1e6:.2f} µs")
        finally:
            ping.unlink()
            pong.unlink()


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:3]))
