"""Parameter counts of every Residual Attention Network, in Gluon and in the PyTorch port.

    python -m scripts.count_attention_params [--variant imagenet|cifar|all]

Counts learnable parameters (convolution and dense weights and biases, BN scale and shift;
not BN running statistics) with 1000 classes for ImageNet and 10 for CIFAR, next to the same
count with the BN running statistics and the paper's number. The PyTorch count is taken on the
meta device (no memory); Gluon's from its parameter shapes.

The counts are the original code's (haoxintong/ResidualAttentionNetwork-Gluon) and, for
Attention-56/92, those of the authors' Caffe prototxts, which have the same layer shapes
(parity_tests/test_paper_tables.py derives them from the originals' layer lists). The paper's
ImageNet numbers are no counting convention of those networks: with the running statistics
Attention-56 rounds to its 31.9M, but Attention-92 to 52.6M, not 51.3M. The paper's CIFAR
networks are not described in it; the original code's CIFAR variant is another, larger one.
"""
import argparse

import numpy as np

#: Wang et al., CVPR 2017 (arXiv 1704.06904), millions: the ImageNet single-crop comparison
#: (224x224) and the CIFAR-10 comparison with the state of the art
PAPER_MILLIONS = {"attention56": 31.9, "attention92": 51.3, "attention92_cifar": 1.9,
                  "attention236_cifar": 5.1, "attention452_cifar": 8.6}
DEPTHS = (56, 92, 128, 164, 236, 452)


def torch_counts(name, **kwargs):
    """(learnable parameters, BN running means and variances) of the registered PyTorch model
    ``name`` (any family), built on the meta device."""
    import torch
    from pytorch_impl import create_model
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    statistics = sum(b.numel() for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()), statistics


def gluon_learnable(net):
    """Learnable parameters of a Gluon block, from their declared shapes (no initialisation)."""
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")


def main(argv=None):
    from gluon_impl import create_model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("imagenet", "cifar", "all"), default="all")
    args = parser.parse_args(argv)
    variants = ("imagenet", "cifar") if args.variant == "all" else (args.variant,)
    print(f"{'model':20s} {'gluon':>12s} {'pytorch':>12s} {'+BN stats':>12s} {'paper':>7s}")
    for variant in variants:
        for depth in DEPTHS:
            name = f"attention{depth}" + ("_cifar" if variant == "cifar" else "")
            g = gluon_learnable(create_model(name))
            t, statistics = torch_counts(name)
            paper = f"{PAPER_MILLIONS[name]:.1f}M" if name in PAPER_MILLIONS else "-"
            flag = "" if g == t else "  MISMATCH"
            print(f"{name:20s} {g:12,d} {t:12,d} {t + statistics:12,d} {paper:>7s}{flag}")


if __name__ == "__main__":
    main()
