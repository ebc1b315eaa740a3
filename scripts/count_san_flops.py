"""Multiply-accumulates of the SAN models at 224x224, next to Table 1 of the paper.

Counted per image as the reference's counter (util/complexity.py of hszhao/SAN) does for
what it counts: convolutions and the fc layer (a MAC per weight use, plus one per bias),
batch norms (two per element), ReLUs and poolings (one per element), subtraction (one per
output element) and aggregation (k*k per output element); softmax and unfold are free.

    python -m scripts.count_san_flops
"""
import argparse

import torch
from torch import nn

import pytorch_impl.models.san as san
from pytorch_impl import create_model

PAPER_GMACS = {"san10_pairwise": 2.2, "san10_patchwise": 1.9, "san15_pairwise": 3.0,
               "san15_patchwise": 2.6, "san19_pairwise": 3.8, "san19_patchwise": 3.3}


def count_macs(model, size=224):
    total = [0]

    def module_hook(module, inputs, output):
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
            total[0] += output.numel() * (per_output + (module.bias is not None))
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * (module.in_features + (module.bias is not None))
        elif isinstance(module, nn.BatchNorm2d):
            total[0] += 2 * x.numel()
        elif isinstance(module, (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d)):
            total[0] += x.numel() if not isinstance(module, nn.ReLU) else output.numel()

    def counted(op, per_element):
        def wrapper(*args, **kwargs):
            out = op(*args, **kwargs)
            total[0] += out.numel() * per_element(args)
            return out
        return wrapper

    handles = [m.register_forward_hook(module_hook) for m in model.modules()]
    originals = san.aggregation, san.subtraction, san.subtraction2
    san.aggregation = counted(san.aggregation, lambda args: args[2] ** 2)
    san.subtraction = counted(san.subtraction, lambda args: 1)
    san.subtraction2 = counted(san.subtraction2, lambda args: 1)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size))
    finally:
        san.aggregation, san.subtraction, san.subtraction2 = originals
        for h in handles:
            h.remove()
    return total[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    print(f"{'model':18s} {'params (M)':>10s} {'GMACs':>7s} {'paper (G)':>9s}")
    for name, paper in PAPER_GMACS.items():
        model = create_model(name)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:18s} {params:10.2f} {count_macs(model, args.size) / 1e9:7.2f} {paper:9.1f}")


if __name__ == "__main__":
    main()
