"""The E3P-ViT suite: every model x device x dataset of the run is one case.

    pytest benchmarks/ --device cpu                   # the paper's 13 ViTs on this CPU
    pytest benchmarks/ --device rtx3050 --e3p-dataset cifar10=~/data --e3p-checkpoints ckpts/

Stage 1 (params, GMACs, NetScore) is computed for each case's model as it is built; stage 2
measures it on the device. The table at the end ranks the cases by SAM.
"""


def test_energy(e3p):
    # Steady state: passes over every case (the earlier ones ran before the first test), each of
    # rounds of at least max(1 s, 10 sensor periods), energy from the device's sensor at the window
    # edges. Where pytest-benchmark is active, per-image latency also lands in its table.
    e3p.measure()
    # Top-1/top-5 on the case's dataset (or the labelled reference top-1 where it has no labels).
    e3p.evaluate()
