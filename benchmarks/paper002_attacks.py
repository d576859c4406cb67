"""The attacks of configs/paper002_cifar10.yaml against paper 002's Table 2.

Trains a LeNet-5 3 epochs on a 5000-image slice of the real CIFAR-10
(``benchmarks/metrics.py``'s ``cifar_lenet``), attacks 200 correctly classified
points of its test slice with every attack of the config, exactly as
configured, and prints success rate and mean +- sd of L0, L2 (``pixels``, the
papers' convention) and L-inf over the AEs that fool the model, next to the
paper's Table 2 (normal regime, CIFAR-10).

    python benchmarks/paper002_attacks.py [--cifar ../shared/data/cifar-10-batches-py]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
PAPER_TABLE_2 = {"cw_l2": "1024.00 +- 0.00, 0.43 +- 0.48, 0.07 +- 0.06",
                 "fgsm": "1017.92 +- 25.30, 8.93 +- 0.48, 0.30 +- 0.00",
                 "pgd": "1018.99 +- 20.87, 8.10 +- 0.57, 0.30 +- 0.00"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar", default=str(_HERE.parents[1] / "shared" / "data"
                                               / "cifar-10-batches-py"))
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    import yaml

    from advfit import runtime

    runtime.configure(2, seed=0)
    sys.path.insert(0, str(_HERE))
    from metrics import cifar_lenet

    from advfit.attacks.adversarial_sets import predict_labels
    from advfit.attacks import resolve_params, run_attack
    from advfit.evaluation.distances import perturbation_norms

    model, x_correct = cifar_lenet(args.cifar, 0)
    x = x_correct[:args.n]
    y = predict_labels(model, x)
    config = yaml.safe_load((_HERE.parent / "configs" / "paper002_cifar10.yaml").read_text())
    for name, spec in config["attacks"].items():
        spec = dict(spec)
        method = spec.pop("method", name)
        x_adv = run_attack(method, model, x, y, resolve_params(method, spec))
        fooled = predict_labels(model, x_adv) != y
        norms = perturbation_norms(x_adv[fooled], x[fooled], "pixels")
        stats = ", ".join(f"{norms[k].mean():.2f} +- {norms[k].std(ddof=1):.2f}"
                          for k in ("l0", "l2", "linf"))
        print(f"{name} ({method}): success {fooled.mean():.3f}; L0, L2, Linf: {stats}"
              f"   paper Table 2: {PAPER_TABLE_2.get(name, '-')}", flush=True)


if __name__ == "__main__":
    main()
