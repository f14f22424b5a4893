"""The remote path's throughput over the local path's, on the same machine: the same TorchScript model,
the same runtime (this torch), the same protocol rounds, run here in-process and on a "board" that is
this machine over localhost SSH (a throwaway sshd, as the tests start it). Alternating, repeated; the
goal is a ratio >= 0.99: the rounds are timed on the board, so the link must not show in them.

Also the per-case overhead of the remote path: exporting the model, shipping it (cold: not on the
board yet; warm: cached by its hash) and the 32-image check against fp32.

    python scripts/bench_remote.py [--model test_vit] [--batch 8] [--repeats 5] [--rounds 5] [--min-round-s 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # fakes.sshd: the throwaway server

from fakes.sshd import SSHD, SshServer, board_python  # noqa: E402

from pytest_e3p.measure.context import MeasureContext  # noqa: E402
from pytest_e3p.measure.protocols import Protocol, run_protocol  # noqa: E402
from pytest_e3p.models import zoo  # noqa: E402
from pytest_e3p.models.build import RANDOM, build_model  # noqa: E402
from pytest_e3p.models.complexity import model_input_size  # noqa: E402
from pytest_e3p.remote.boards import RemoteBoard  # noqa: E402
from pytest_e3p.remote.client import BoardClient  # noqa: E402
from pytest_e3p.run.remote_bench import export  # noqa: E402


def images_per_s(rounds) -> float:
    return sum(r.images for r in rounds) / sum(r.duration_s for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="test_vit")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-round-s", type=float, default=0.5)
    args = parser.parse_args()
    if SSHD is None:
        sys.exit("sshd is not installed: apt-get install openssh-server")
    threads = torch.get_num_threads()
    net, _ = build_model(zoo.parse_model(args.model), RANDOM, None, None, None, "cpu", args.batch)
    net.eval()
    size = model_input_size(net)
    example = torch.randn((2, *size))
    t0 = time.monotonic()
    model = export(net, example, "torch")
    export_s = time.monotonic() - t0
    protocol = Protocol(args.batch, args.rounds, 1, args.min_round_s, 1.0, 0.0)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = SshServer(folder / "sshd").start()
        try:
            board = RemoteBoard("bench", "127.0.0.1", "cpu", "root", server.port, tuple(server.ssh_options()), None, str(board_python(folder)), "torch", "none")
            client = BoardClient(board)
            t0 = time.monotonic()
            client.connect("bench_remote")
            connect_s = time.monotonic() - t0
            t0 = time.monotonic()
            path = client.ship(model, "torch")
            cold_s = time.monotonic() - t0
            client.shipped.clear()  # ask the board again: it has the file, so nothing is sent
            t0 = time.monotonic()
            client.ship(model, "torch")
            warm_s = time.monotonic() - t0
            images = torch.randn((32, *size))
            request = {"runtime": "torch", "model": path, "accelerator": "cpu", "threads": threads}
            t0 = time.monotonic()
            client.logits({**request, "shape": list(images.shape)}, images.numpy().tobytes())
            check_s = time.monotonic() - t0

            local_model = torch.jit.load(__import__("io").BytesIO(model)).eval()
            x = torch.randn((args.batch, *size), generator=torch.Generator().manual_seed(0))
            ratios, local_rates, remote_rates, pass_s = [], [], [], []
            for i in range(args.repeats):
                order = ("local", "remote") if i % 2 == 0 else ("remote", "local")
                rates = {}
                for which in order:
                    if which == "local":
                        with torch.no_grad():
                            steady = run_protocol(lambda: local_model(x), args.batch, MeasureContext(), protocol)
                    else:
                        t0 = time.monotonic()
                        steady = client.measure(
                            {
                                **request,
                                "shape": [args.batch, *size],
                                "sensor": "none",
                                "protocol": {"rounds": args.rounds, "min_round_s": args.min_round_s, "warmup_s": 1.0, "idle_s": 0.0},
                            },
                            protocol,
                        )
                        pass_s.append(time.monotonic() - t0 - sum(r.duration_s for r in steady.rounds))
                    rates[which] = images_per_s(steady.rounds)
                local_rates.append(rates["local"])
                remote_rates.append(rates["remote"])
                ratios.append(rates["remote"] / rates["local"])
                print(f"repeat {i + 1}: local {rates['local']:.1f} img/s, remote {rates['remote']:.1f} img/s, ratio {ratios[-1]:.3f}", flush=True)
            client.close()
        finally:
            server.kill()

    print(
        f"model {args.model}, batch {args.batch}, {threads} torch threads, {args.repeats} alternating repeats of {args.rounds} rounds >= {args.min_round_s} s"
    )
    print(f"throughput remote / local: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    print(f"  local  median {statistics.median(local_rates):.1f} img/s; remote median {statistics.median(remote_rates):.1f} img/s")
    print(f"per-run overhead: connect + agent + probe + lock {connect_s:.2f} s")
    print(
        f"per-case overhead: export {export_s:.2f} s, ship {len(model) / 1e6:.1f} MB cold {cold_s:.2f} s / cached {warm_s:.2f} s, "
        f"32-image check {check_s:.2f} s"
    )
    print(f"per-pass overhead outside the timed rounds (agent start, model load, warm-up {protocol.warmup_s:g} s): median {statistics.median(pass_s):.2f} s")


if __name__ == "__main__":
    main()
