"""The benchmark suites (which cases run) and the summary figures computed from their rows."""

from __future__ import annotations

from typing import Any

from vatt.bench.step import Case

DROPTOKEN_KEEPS = (1.0, 0.75, 0.5, 0.25)
# CPU suite: BBS/MBS widths and token counts (video 1568, audio 1200, text 16 tokens) with
# every encoder cut to this many layers, one clip per device, so it fits 15 minutes on 2 cores.
CPU_LAYERS = 4


def cases(suite: str, configs: list[str], *, batch_per_device: int | None = None,
          layers: int | None = None, keeps: tuple[float, ...] = DROPTOKEN_KEEPS,
          dtypes: tuple[str, ...] | None = None, remats: tuple[str, ...] | None = None,
          attentions: tuple[str, ...] | None = None) -> list[Case]:
    """The cases of `suite` ("cpu" | "gpu") for `configs` (tiny, bbs, mbs, lbs).

    Every config gets one row at the suite's default settings; the sweep config (bbs when
    present, else the first) also gets DropToken `keeps`, every dtype, remat policy and
    attention implementation, one axis at a time around keep 50% (the paper's setting).
    """
    if suite not in ("cpu", "gpu"):
        raise ValueError(f"--suite={suite}: use cpu or gpu")
    gpu = suite == "gpu"
    dtypes = dtypes or (("bfloat16", "float32") if gpu else ("float32", "bfloat16"))
    remats = remats or (("none", "full", "dots_saveable") if gpu else ("none", "full"))
    attentions = attentions or (("xla", "cudnn") if gpu else ("xla",))
    base_dtype, base_remat, base_attention = dtypes[0], remats[0], attentions[0]
    sweep = "bbs" if "bbs" in configs else (configs[0] if configs else None)
    out: list[Case] = []
    for variant in configs:
        if variant == "tiny":
            bpd = batch_per_device if batch_per_device is not None else (0 if gpu else 64)
            lay = layers or 0
        else:
            bpd = batch_per_device if batch_per_device is not None else (0 if gpu else 1)
            lay = layers if layers is not None else (0 if gpu else CPU_LAYERS)
        common = dict(variant=variant, batch_per_device=bpd, layers=lay, dtype=base_dtype,
                      remat=base_remat, attention=base_attention)
        if variant != sweep:
            out.append(Case(keep=None, group="config", **common))
            continue
        for keep in keeps:
            out.append(Case(**{**common, "keep": keep, "group": "droptoken"}))
        ref = dict(common, keep=0.5 if 0.5 in keeps else keeps[0])
        out += [Case(**{**ref, "dtype": d, "group": "dtype"}) for d in dtypes[1:]]
        out += [Case(**{**ref, "remat": r, "group": "remat"}) for r in remats[1:]]
        out += [Case(**{**ref, "attention": a, "group": "attention"}) for a in attentions[1:]]
    return out


def accumulation_cases(configs: list[str], steps: tuple[int, ...], *,
                       batch_per_device: int | None = None,
                       layers: int | None = None) -> list[Case]:
    """Contrastive gradient accumulation (config.accumulation_steps) at one global batch: a
    row per N in `steps` for each config (tiny: 64 clips per device; others: `steps`' largest
    N clips per device, the fewest every N divides), group "accumulation"."""
    out: list[Case] = []
    for variant in configs:
        tiny = variant == "tiny"
        bpd = batch_per_device if batch_per_device is not None else (64 if tiny else max(steps))
        lay = layers if layers is not None else (0 if tiny else CPU_LAYERS)
        out += [Case(variant=variant, batch_per_device=bpd, layers=lay, accumulation=n,
                     group="accumulation") for n in steps]
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline figures: droptoken_step_time_ratio (keep 50% over keep 100% of the sweep config,
    same run), mfu (the sweep config at keep 50%, the suite's default settings), and the
    xla-vs-cudnn numerics when both ran."""
    drop = {r["keep"]: r for r in rows if r["group"] == "droptoken" and "error" not in r}
    out: dict[str, Any] = {"droptoken_step_time_ratio": None, "mfu": None}
    if 1.0 in drop and 0.5 in drop:
        out["droptoken_step_time_ratio"] = drop[0.5]["step_s"] / drop[1.0]["step_s"]
    if drop:
        ref = drop.get(0.5) or next(iter(drop.values()))
        out.update(mfu=ref.get("mfu"), mfu_vs_matmul=ref.get("mfu_vs_matmul"),
                   mfu_case=ref["name"])
        if 1.0 in drop:
            out["mfu_keep100"] = drop[1.0].get("mfu")
    acc = {r["accumulation"]: r for r in rows if r["group"] == "accumulation" and "error" not in r}
    if 1 in acc:
        # Peak temporaries of N chunks over the whole batch at once, and the step-1 loss (the
        # same parameters, batch and random streams: equal up to float rounding).
        ref = acc[1]
        out["accumulation_temp_ratio"] = {n: r["temp_bytes"] / ref["temp_bytes"]
                                          for n, r in sorted(acc.items())}
        out["accumulation_loss_rel_diff"] = {
            n: abs(r["first_loss"] - ref["first_loss"]) / max(abs(ref["first_loss"]), 1e-12)
            for n, r in sorted(acc.items())}
    att = [r for r in rows if r["group"] == "attention" and "error" not in r]
    if att and 0.5 in drop:
        ref = drop[0.5]
        for r in att:
            # Step-1 loss and gradient norm: same parameters, batch and random streams.
            out[f"{r['attention']}_vs_{ref['attention']}_loss_rel_diff"] = abs(
                r["first_loss"] - ref["first_loss"]) / max(abs(ref["first_loss"]), 1e-12)
            out[f"{r['attention']}_vs_{ref['attention']}_grad_norm_rel_diff"] = abs(
                r["first_grad_norm"] - ref["first_grad_norm"]) / max(
                    abs(ref["first_grad_norm"]), 1e-12)
    return out
