"""Where the paper-size FDM's compute goes: per-layer and per-resolution forward FLOPs, side by side
with the original release's U-Net (github.com/schmidtdominik/LAPO, ``lapo/models.py``).

lapo's FDM (``lapo.models.fdm.ForwardDynamicsModel`` at ``LAM_SIZES["paper"]``, k = 1, latent 128,
64x64x3 frames) is counted by running it under ``torch.utils.flop_counter.FlopCounterMode`` with
forward hooks recording each layer's output resolution. The release's network is not imported
(it is not a dependency): ``RELEASE_LAYERS`` lists the shapes of its convolutions as read from its
source (base width 24; a conv + ResidualLayer of half width + 2x2 max-pool per level from 64x64
down to 2x2 with widths 24 .. 384, a 2x2 conv to 768 channels at 1x1; the latent tiled over the
input (128 channels) and concatenated at 1x1; transposed 2x2 convs back up, each followed by a
half-width ResidualLayer; a final 3x3 conv on the frames + decoder output, a ResidualLayer and a
1x1 conv to RGB), and each is counted alone by ``FlopCounterMode`` on an input of its shape.
FLOPs are 2 per multiply-add, forward only, per sample; normalization and activations are
not counted (they are memory-bound and cost few FLOPs).

Usage: python benchmarks/fdm_flops.py [--layers]   (--layers: also the per-layer table)
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lapo.models.lam_sizes import make_lam_nets

# (name, input resolution, in channels, out channels, kernel, kind); kind "conv" keeps the
# resolution (padding k // 2) except the 2x2 "valid" one, "up" is a 2x2 stride-2 transposed conv.
B = 24
RELEASE_LAYERS: list[tuple[str, int, int, int, int, str]] = [
    ("down0.conv", 64, 6 + 128, B, 3, "conv"),
    ("down0.res.conv0", 64, B, B // 2, 3, "conv"),
    ("down0.res.conv1", 64, B // 2, B, 3, "conv"),
    ("down1.conv", 32, B, 2 * B, 3, "conv"),
    ("down1.res.conv0", 32, 2 * B, B, 3, "conv"),
    ("down1.res.conv1", 32, B, 2 * B, 3, "conv"),
    ("down2.conv", 16, 2 * B, 4 * B, 3, "conv"),
    ("down2.res.conv0", 16, 4 * B, 2 * B, 3, "conv"),
    ("down2.res.conv1", 16, 2 * B, 4 * B, 3, "conv"),
    ("down3.conv", 8, 4 * B, 8 * B, 3, "conv"),
    ("down3.res.conv0", 8, 8 * B, 4 * B, 3, "conv"),
    ("down3.res.conv1", 8, 4 * B, 8 * B, 3, "conv"),
    ("down4.conv", 4, 8 * B, 16 * B, 3, "conv"),
    ("down4.res.conv0", 4, 16 * B, 8 * B, 3, "conv"),
    ("down4.res.conv1", 4, 8 * B, 16 * B, 3, "conv"),
    ("down5.conv2x2", 2, 16 * B, 32 * B, 2, "valid"),
    ("up0.convT", 1, 32 * B + 128, 16 * B, 2, "up"),
    ("up0.res.conv0", 2, 16 * B, 8 * B, 3, "conv"),
    ("up0.res.conv1", 2, 8 * B, 16 * B, 3, "conv"),
    ("up1.convT", 2, 32 * B, 8 * B, 2, "up"),
    ("up1.res.conv0", 4, 8 * B, 4 * B, 3, "conv"),
    ("up1.res.conv1", 4, 4 * B, 8 * B, 3, "conv"),
    ("up2.convT", 4, 16 * B, 4 * B, 2, "up"),
    ("up2.res.conv0", 8, 4 * B, 2 * B, 3, "conv"),
    ("up2.res.conv1", 8, 2 * B, 4 * B, 3, "conv"),
    ("up3.convT", 8, 8 * B, 2 * B, 2, "up"),
    ("up3.res.conv0", 16, 2 * B, B, 3, "conv"),
    ("up3.res.conv1", 16, B, 2 * B, 3, "conv"),
    ("up4.convT", 16, 4 * B, B, 2, "up"),
    ("up4.res.conv0", 32, B, B // 2, 3, "conv"),
    ("up4.res.conv1", 32, B // 2, B, 3, "conv"),
    ("up5.convT", 32, 2 * B, B, 2, "up"),
    ("up5.res.conv0", 64, B, B // 2, 3, "conv"),
    ("up5.res.conv1", 64, B // 2, B, 3, "conv"),
    ("final.conv", 64, B + 6, B, 3, "conv"),
    ("final.res.conv0", 64, B, B // 2, 3, "conv"),
    ("final.res.conv1", 64, B // 2, B, 3, "conv"),
    ("final.conv1x1", 64, B, 3, 1, "conv"),
]


def release_table() -> list[tuple[str, int, int, int, float]]:
    """Rows ``(layer, output resolution, out channels, parameters, forward FLOPs)`` per sample."""
    rows = []
    for name, res, c_in, c_out, k, kind in RELEASE_LAYERS:
        if kind == "up":
            layer: nn.Module = nn.ConvTranspose2d(c_in, c_out, k, stride=2)
        else:
            layer = nn.Conv2d(c_in, c_out, k, padding=0 if kind == "valid" else k // 2)
        x = torch.zeros(1, c_in, res, res)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            out = layer(x)
        params = sum(p.numel() for p in layer.parameters())
        rows.append((name, out.shape[-1], c_out, params, float(counter.get_total_flops())))
    return rows


def lapo_table(size: str = "paper") -> list[tuple[str, int, int, int, float]]:
    """The same rows for lapo's FDM of ``size``, every conv and linear layer."""
    _, fdm = make_lam_nets(size, context=1, latent_dim=128)
    shapes: dict[str, tuple[int, int]] = {}
    leaves = {n: m for n, m in fdm.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    leaves |= {n: m for n, m in fdm.named_modules() if isinstance(m, nn.ConvTranspose2d)}
    for name, module in leaves.items():
        module.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(
                name, (o.shape[-1] if o.ndim == 4 else 0, o.shape[1])
            )
        )
    frames, latent = torch.zeros(1, 2, 3, 64, 64), torch.zeros(1, 128)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fdm(frames, latent)
    counts = counter.get_flop_counts()
    rows = []
    for name, module in leaves.items():
        flops = sum(counts.get(f"ForwardDynamicsModel.{name}", {}).values())
        params = sum(p.numel() for p in module.parameters())
        res, width = shapes[name]
        rows.append((name, res, width, params, float(flops)))
    return rows


def by_resolution(rows) -> dict[int, tuple[float, int, set[int]]]:
    """resolution -> (FLOPs, parameters, widths)."""
    out: dict[int, list] = defaultdict(lambda: [0.0, 0, set()])
    for _, res, width, params, flops in rows:
        out[res][0] += flops
        out[res][1] += params
        out[res][2].add(width)
    return {r: (f, p, w) for r, (f, p, w) in sorted(out.items(), reverse=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", action="store_true", help="also print every layer")
    args = parser.parse_args()
    tables = {"lapo paper": lapo_table(), "release": release_table()}
    if args.layers:
        for title, rows in tables.items():
            print(f"\n{title}: layer, out res, out ch, params, forward MFLOP/sample")
            for name, res, width, params, flops in rows:
                print(f"  {name:28s} {res:4d} {width:5d} {params:9,d} {flops / 1e6:9.1f}")
    totals = {t: (sum(r[4] for r in rows), sum(r[3] for r in rows)) for t, rows in tables.items()}
    res_tables = {t: by_resolution(rows) for t, rows in tables.items()}
    resolutions = sorted({r for t in res_tables.values() for r in t}, reverse=True)
    print("\nforward GFLOP per sample and parameters (M) by output resolution (0: linear layers)")
    print(f"{'res':>5} | {'lapo GFLOP':>10} {'params':>7} {'widths':>12} | "
          f"{'release GFLOP':>13} {'params':>7} {'widths':>12} | lapo - release")  # fmt: skip
    for res in resolutions:
        cells = []
        for t in tables:
            f, p, w = res_tables[t].get(res, (0.0, 0, set()))
            cells.append((f, p, ",".join(map(str, sorted(w)))))
        (lf, lp, lw), (rf, rp, rw) = cells
        print(f"{res:5d} | {lf / 1e9:10.3f} {lp / 1e6:7.2f} {lw:>12} | {rf / 1e9:13.3f} "
              f"{rp / 1e6:7.2f} {rw:>12} | {(lf - rf) / 1e9:+14.3f}")  # fmt: skip
    (lf, lp), (rf, rp) = totals["lapo paper"], totals["release"]
    print(f"total | {lf / 1e9:10.3f} {lp / 1e6:7.2f} {'':>12} | {rf / 1e9:13.3f} {rp / 1e6:7.2f} "
          f"{'':>12} | {(lf - rf) / 1e9:+14.3f}  (ratio {lf / rf:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
