"""The report's sections for what trials measure beyond plain training throughput:
convergence to a target loss, Mixture-of-Experts routing, inference, distillation and growth.

Each section appears only when some trial has its data. Sections are (title, how it is
measured, Table) like the accounting sections; figures are (slug, title, how, png) and
`content` wraps them. Statistics come from `harness.analysis`; this module formats them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import final_eval_loss, growth_savings
from harness.analysis.trials import as_number
from harness.report import kind_figures, units
from harness.report.tables import Table, _row_class

HOW = {
    "convergence": "The eval loss (mean next-token loss over the held-out eval batches) measured "
                   "on the initial weights and then every {interval} of training; training time "
                   "leaves the evaluations out. Tokens, time and FLOPs to target are those of the "
                   "first evaluation at or below the target, so they overshoot the true crossing "
                   "by less than one evaluation interval; FLOPs are tokens x the model FLOPs per "
                   "token (active parameters for a Mixture of Experts, a teacher's forward pass "
                   "included for distillation).",
    "convergence figure": "eval loss against global tokens trained (left) and against training "
                          "wall time with evaluations left out (right); the dashed red line is "
                          "the target loss, the dashed black one the synthetic source's entropy "
                          "floor.",
    "routing": "Router figures over the measured steps (harness.metrics.routing): the Switch "
               "load-balancing loss, unweighted (1 is uniform routing, E everything to one "
               "expert); ST-MoE's z-loss (mean squared log-partition of the router); the "
               "router's mean entropy per token against its maximum ln E (near it, the router "
               "has not learnt to choose); load imbalance, the busiest expert's assignments "
               "over the mean expert's summed over layers (1.00x is balanced), and the worst "
               "single layer's; the share of assignments dropped past the expert capacity.",
    "experts": "share of the routed assignments each expert received over the measured steps, "
               "summed over layers and counted before capacity dropping (where the router wants "
               "tokens to go); the dashed line is the uniform share 1/E.",
    "inference": "The same trained weights loaded per trial. Weight bytes: every persistent "
                 "tensor of the loaded model, once; weight memory: the CUDA allocator's bytes "
                 "for the loaded model (CUDA only). Prefill: tokens/s of a forward pass over "
                 "the prompts (median of repeats); decode: generated tokens/s with a KV cache. "
                 "Perplexity is exp of the eval loss. Ratios and changes are against {baseline}.",
    "distillation": "Teacher and students evaluated on the same eval batches after training; "
                    "prefill is a forward pass's tokens/s. Teacher training is what training the "
                    "teacher cost (outside the measured window): a distilled student needs it "
                    "on top of its own training, a student trained from scratch does not.",
    "growth": "Cost for the large model to reach the scratch model's final eval loss (the "
              "target; mean over scratch repeats): where its eval curve crosses the target, "
              "interpolated between evaluations, plus the growth operator's training (LiGO's "
              "operator steps; stacking has none); \"with small\" also counts the small model's "
              "training. Saved = 1 - cost / scratch cost. For reference, LiGO (Wang et al. "
              "2023, \"Learning to Grow Pretrained Models for Efficient Transformer Training\") "
              "reports saving 44.7% of the FLOPs and 40.7% of the wall time growing BERT-Small "
              "into BERT-Base, counting the operator's steps but not the small model's "
              "pretraining: compare it with the columns without the small model.",
}

ROUTER_COLUMNS = (("router_aux_loss", "aux loss", units.number),
                  ("router_z_loss", "z-loss", units.number),
                  ("router_entropy", "router entropy", units.number),
                  ("router_entropy_max", "max entropy", units.number),
                  ("expert_load_imbalance", "load imbalance", units.ratio),
                  ("expert_load_imbalance_worst_layer", "worst layer", units.ratio),
                  ("dropped_token_fraction", "dropped", units.percent))


def kind_sections(frame: pd.DataFrame, trials: list[dict[str, Any]],
                  curves: pd.DataFrame) -> list[tuple[str, str, Table]]:
    """The optional sections, in reading order. `frame` is `ratios_to_baseline(trial_frame)`,
    `curves` is `eval_curves`."""
    sections = []
    convergence = convergence_table(frame, trials, curves)
    if convergence is not None:
        sections.append(("Convergence", _convergence_text(trials, curves), convergence))
    routing = routing_table(trials)
    if routing is not None:
        sections.append(("Mixture of Experts routing", HOW["routing"], routing))
    inference = inference_table(frame, trials)
    if inference is not None:
        sections.append(("Inference", HOW["inference"].format(baseline=inference[1]), inference[0]))
    distillation = distillation_table(trials)
    if distillation is not None:
        sections.append(("Distillation", HOW["distillation"], distillation))
    growth = growth_table(growth_savings(frame, curves))
    if growth is not None:
        sections.append(("Growth", HOW["growth"], growth))
    return sections


def kind_figures_for(trials: list[dict[str, Any]], series_rows: list[tuple[str, str, int, float | None]],
                     curves: pd.DataFrame) -> list[tuple[str, str, str, bytes]]:
    """(slug, title, how it is measured, PNG) of the optional figures."""
    blocks = []
    if not curves.empty:
        with_curves = [t for t in trials if t["trial_id"] in set(curves["trial_id"])]
        targets = [n["target_loss"] for n in _notes(with_curves) if n.get("target_loss") is not None]
        floors = [n["loss_floor"] for n in _notes(with_curves) if n.get("loss_floor") is not None]
        blocks.append(("convergence", "Convergence", "eval loss: " + HOW["convergence figure"],
                       kind_figures.convergence_png(curves, targets, floors)))
    loads = _expert_loads(trials, series_rows)
    if loads:
        blocks.append(("experts", "Tokens per expert", "tokens per expert: " + HOW["experts"],
                       kind_figures.experts_png(loads)))
    return blocks


def convergence_table(frame: pd.DataFrame, trials: list[dict[str, Any]],
                      curves: pd.DataFrame) -> Table | None:
    """Per trial with eval losses: FLOPs per token, tokens, time and FLOPs to the target (when
    a target was set; a dash where it was not reached, the reason listed as unmeasured) and
    the last evaluation's loss."""
    if curves.empty:
        return None
    with_target = any(n.get("target_loss") is not None for n in _notes(trials))
    headers = ["trial", "GFLOP/token"]
    if with_target:
        headers += ["target loss", "tokens to target", "time to target", "FLOPs to target"]
    headers.append("final eval loss")
    by_id = {t["trial_id"]: t for t in trials}
    values = frame.set_index("trial_id", drop=False)
    rows, classes = [], []
    for trial_id, curve in curves.groupby("trial_id", sort=False):
        row = values.loc[trial_id]
        cells = [row["name"], units.gflop(row.get("flops_per_token"))]
        if with_target:
            target = (by_id[trial_id].get("notes") or {}).get("target_loss")
            cells += [units.loss(target), units.tokens(row.get("tokens_to_target")),
                      units.seconds(row.get("time_to_target_s")), units.flops(row.get("flops_to_target"))]
        cells.append(units.loss(final_eval_loss(curve)))
        rows.append(cells)
        classes.append(_row_class(row["status"], bool(row.get("is_baseline"))))
    return Table(headers, rows, classes, [False] + [True] * (len(headers) - 1))


def routing_table(trials: list[dict[str, Any]]) -> Table | None:
    """Router figures of every Mixture-of-Experts trial (model.n_experts > 0)."""
    moe = [t for t in trials if _model(t).get("n_experts")]
    if not moe:
        return None
    # active parameters only where a trial stored them: a column of dashes would claim a
    # measurement that no code makes
    with_active = any(_active_parameters(t) is not None for t in moe)
    headers = ["trial", "experts (top-k)", "parameters (total)",
               *(["parameters (active)"] if with_active else []),
               *(label for _, label, _ in ROUTER_COLUMNS)]
    rows, classes = [], []
    for trial in moe:
        model, metrics, notes = _model(trial), trial.get("metrics") or {}, trial.get("notes") or {}
        active = [units.count(as_number(_active_parameters(trial)))] if with_active else []
        rows.append([trial["name"], f"{model['n_experts']} (top-{model.get('expert_top_k', 1)})",
                     units.count(as_number(notes.get("parameters"))), *active,
                     *(fmt(as_number(metrics.get(key))) for key, _, fmt in ROUTER_COLUMNS)])
        classes.append(_row_class(trial["status"], False))
    return Table(headers, rows, classes, [False, False] + [True] * (len(headers) - 2))


def inference_table(frame: pd.DataFrame, trials: list[dict[str, Any]]) -> tuple[Table, str] | None:
    """Per inference trial: weight dtype, quantization, weight bytes and memory, the ratio of
    weight bytes to the baseline's, prefill and decode speed, perplexity and its change against
    the baseline (the run's baseline combination, else the first ok trial). Returns the table
    and the name of what it compares against."""
    ids = [t["trial_id"] for t in trials if _kind(t) == "inference"]
    if not ids:
        return None
    rows_of = frame[frame["trial_id"].isin(ids)].copy()
    if "perplexity" not in rows_of:
        rows_of["perplexity"] = math.nan
    # a trial that stored only its eval loss still has a perplexity: exp of it
    with np.errstate(over="ignore"):  # a huge loss is an infinite perplexity, not an error
        rows_of["perplexity"] = rows_of["perplexity"].fillna(np.exp(rows_of["eval_loss"]))
    reference, against = _inference_reference(rows_of)
    by_id = {t["trial_id"]: t for t in trials}
    headers = ["trial", "weights", "quantization", "weight bytes", "weight memory (CUDA)",
               "weights vs baseline", "prefill tokens/s", "decode tokens/s", "perplexity",
               "perplexity vs baseline"]
    rows, classes = [], []
    for values in rows_of.to_dict("records"):
        techniques = (by_id[values["trial_id"]].get("spec") or {}).get("techniques") or {}
        notes = by_id[values["trial_id"]].get("notes") or {}
        weight_bytes, perplexity = values.get("weight_bytes"), values["perplexity"]
        rows.append([values["name"], units.plain(techniques.get("precision", notes.get("weights"))),
                     units.plain(techniques.get("quantization", notes.get("quantization"))),
                     units.size(weight_bytes), units.size(values.get("weight_memory_bytes")),
                     units.ratio(_over(weight_bytes, reference["weight_bytes"])),
                     units.tokens_per_s(values.get("prefill_tokens_per_s")),
                     units.tokens_per_s(values.get("decode_tokens_per_s")),
                     units.number(perplexity),
                     units.signed_percent(_over(perplexity, reference["perplexity"]) - 1)])
        classes.append(_row_class(values["status"], bool(values.get("is_baseline"))))
    return Table(headers, rows, classes, [False] * 3 + [True] * (len(headers) - 3)), against


def distillation_table(trials: list[dict[str, Any]]) -> Table | None:
    """The teacher of each distilled trial, then every student in planned order: parameters,
    eval loss, perplexity, prefill speed, and the teacher's training cost each one needed."""
    distill = [t for t in trials if _kind(t) == "distill"]
    if not distill:
        return None
    headers = ["model", "trial", "parameters", "eval loss", "perplexity", "prefill tokens/s",
               "teacher training tokens", "teacher training time", "teacher training FLOPs"]
    rows, classes = [], []
    for trial in distill:
        m = trial.get("metrics") or {}
        if "teacher_eval_loss" in m:
            rows.append(["teacher", trial["name"], units.count(as_number((trial.get("notes") or {})
                                                                      .get("teacher_parameters"))),
                         units.loss(as_number(m.get("teacher_eval_loss"))),
                         units.number(as_number(m.get("teacher_perplexity"))),
                         units.tokens_per_s(as_number(m.get("teacher_prefill_tokens_per_s"))),
                         *_teacher_cost(m)])
            classes.append(_row_class(trial["status"], False))
    for trial in distill:
        m = trial.get("metrics") or {}
        method = _method(trial, "distillation.method")
        eval_loss = as_number(m.get("eval_loss"))
        perplexity = as_number(m.get("perplexity"))
        if math.isnan(perplexity):
            with np.errstate(over="ignore"):  # inf, not an error, for a huge loss
                perplexity = float(np.exp(eval_loss))
        cost = _teacher_cost(m) if method != "scratch" else ["none (no teacher)"] * 3
        rows.append([f"student ({method})", trial["name"], units.count(as_number(m.get("student_parameters"))),
                     units.loss(eval_loss), units.number(perplexity),
                     units.tokens_per_s(as_number(m.get("student_prefill_tokens_per_s"))), *cost])
        classes.append(_row_class(trial["status"], False))
    return Table(headers, rows, classes, [False, False] + [True] * (len(headers) - 2))


def growth_table(savings: pd.DataFrame) -> Table | None:
    """`growth_savings` in the reader's units: costs to the target without the small model,
    and the savings without and with it."""
    if savings.empty:
        return None
    several_groups = savings["group"].nunique() > 1
    repeated = (savings["repeats"] > 1).any()
    headers = (["group"] if several_groups else []) + ["method"] + (["repeats"] if repeated else [])
    headers += ["target loss", "tokens to target", "FLOPs to target", "time to target",
                "tokens saved", "FLOPs saved", "time saved", "tokens saved (with small)",
                "FLOPs saved (with small)", "time saved (with small)", "note"]
    rows = []
    for values in savings.to_dict("records"):
        cells = ([values["group"]] if several_groups else []) + [values["method"]]
        cells += [str(values["repeats"])] if repeated else []
        cells += [units.loss(values["target_loss"]), units.tokens(values["tokens"]),
                  units.flops(values["flops"]), units.seconds(values["time_s"]),
                  *(units.percent(values[f"{cost}_saving{suffix}"])
                    for suffix in ("", "_with_small") for cost in ("tokens", "flops", "time")),
                  values["note"] or ""]
        rows.append(cells)
    text_columns = 1 + several_groups
    return Table(headers, rows, [""] * len(rows),
                 [False] * text_columns + [True] * (len(headers) - text_columns - 1) + [False])


def _convergence_text(trials: list[dict[str, Any]], curves: pd.DataFrame) -> str:
    with_curves = [t for t in trials if t["trial_id"] in set(curves["trial_id"])]
    intervals = sorted({n["eval_interval_tokens"] for n in _notes(with_curves)
                        if n.get("eval_interval_tokens")})
    interval = (" or ".join(f"{units.tokens(float(i))} tokens" for i in intervals)
                if intervals else "interval")
    text = HOW["convergence"].format(interval=interval)
    stopped = [t["name"] for t in with_curves if (t.get("notes") or {}).get("stopped_early")]
    if stopped:
        text += " Stopped at the target (train.stop_at_target): " + ", ".join(stopped) + "."
    return text


def _inference_reference(rows: pd.DataFrame) -> tuple[dict[str, float], str]:
    ok = rows[rows["status"] == "ok"]
    chosen = ok[ok["is_baseline"]] if "is_baseline" in ok else ok.iloc[0:0]
    if chosen.empty:
        chosen, against = ok.iloc[:1], (f"the first trial ({ok['name'].iloc[0]})" if len(ok)
                                        else "no trial (none finished)")
    else:
        against = "the baseline (median over its ok repeats)"
    reference = {key: float(chosen[key].median()) if key in chosen and len(chosen) else math.nan
                 for key in ("weight_bytes", "perplexity")}
    return reference, against


def _teacher_cost(metrics: dict[str, Any]) -> list[str]:
    return [units.tokens(as_number(metrics.get("teacher_train_tokens"))),
            units.seconds(as_number(metrics.get("teacher_train_time_s"))),
            units.flops(as_number(metrics.get("teacher_train_flops")))]


def _expert_loads(trials: list[dict[str, Any]],
                  series_rows: list[tuple[str, str, int, float | None]]) -> dict[str, list[float]]:
    points: dict[str, dict[int, float | None]] = defaultdict(dict)
    for trial_id, name, step, value in series_rows:
        if name == "tokens_per_expert":
            points[trial_id][int(step)] = value
    return {t["name"]: [points[t["trial_id"]][i] for i in sorted(points[t["trial_id"]])]
            for t in trials if points.get(t["trial_id"])}


def _active_parameters(trial: dict[str, Any]) -> Any:
    metrics, notes = trial.get("metrics") or {}, trial.get("notes") or {}
    return metrics.get("active_parameters", notes.get("active_parameters"))


def _method(trial: dict[str, Any], axis: str) -> str:
    spec = trial.get("spec") or {}
    return str(trial["params"].get(axis) or (spec.get("kind_settings") or {}).get("method")
               or (trial.get("notes") or {}).get("method") or "?")


def _kind(trial: dict[str, Any]) -> str:
    return (trial.get("spec") or {}).get("kind") or "train"


def _model(trial: dict[str, Any]) -> dict[str, Any]:
    return (trial.get("spec") or {}).get("model") or {}


def _notes(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t.get("notes") or {} for t in trials]


def _over(value: float | None, reference: float) -> float:
    value = as_number(value)
    if math.isnan(value) or math.isnan(reference) or reference == 0:
        return math.nan
    return value / reference

