"""Parameter counts of every Residual Attention Network, in Gluon and in the PyTorch port.

    python -m scripts.count_attention_params [--variant imagenet|cifar|all]

Counts learnable parameters (convolution and dense weights and biases, BN scale and shift;
not BN running statistics) with 1000 classes for ImageNet and 10 for CIFAR, and compares
them with the paper's Table 4 (Attention-56: 31.9M, Attention-92: 51.3M). The PyTorch
count is taken on the meta device (no memory); Gluon's from its parameter shapes.
"""
import argparse

import numpy as np

#: Wang et al., Table 4 (ImageNet, 224x224)
PAPER_MILLIONS = {"attention56": 31.9, "attention92": 51.3}
DEPTHS = (56, 92, 128, 164, 236, 452)


def torch_count(name):
    import torch
    from pytorch_impl import create_model
    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def gluon_count(name):
    from gluon_impl import create_model
    model = create_model(name)
    return sum(int(np.prod(p.shape)) for p in model.collect_params().values()
               if p.grad_req != "null")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("imagenet", "cifar", "all"), default="all")
    args = parser.parse_args(argv)
    variants = ("imagenet", "cifar") if args.variant == "all" else (args.variant,)
    print(f"{'model':22s} {'gluon':>12s} {'pytorch':>12s} {'paper':>8s}")
    for variant in variants:
        for depth in DEPTHS:
            name = f"attention{depth}" + ("_cifar" if variant == "cifar" else "")
            g, t = gluon_count(name), torch_count(name)
            paper = PAPER_MILLIONS.get(name)
            paper = f"{paper:.1f}M" if paper else "-"
            flag = "" if g == t else "  MISMATCH"
            print(f"{name:22s} {g:12,d} {t:12,d} {paper:>8s}  ({g / 1e6:.2f}M){flag}")


if __name__ == "__main__":
    main()
