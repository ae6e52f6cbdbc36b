"""Train the two-tower model from the bootstrap data and install it: ``python -m training.train``.

Reproducible (seeded: data specs, initial weights, batches) and sized for 2
CPU cores: the guitar takes are generated once into the cache
(:mod:`training.data`), then training takes a few minutes. Steps:

1. data: GMD train grooves + built-ins, generated train/val/test guitar
   windows; weak targets (:mod:`training.targets`) for every (guitar window,
   groove) pair of train and of val;
2. training with :func:`training.losses.rated_contrastive` (Adam, cosine
   learning-rate decay), evaluated on the validation pairs every
   ``--eval-every`` steps; the best validation state is kept (early
   stopping on recall_at_10 + mrr + roc_auc of the validation split);
3. the run directory (``runs/<UTC stamp>``, ``runs/latest`` points at it)
   gets ``model.pt``, ``history.json`` and ``training_curve.png``;
4. :mod:`training.evaluate` on the held-out data (GMD test split, test
   guitar takes) including the personalisation check;
5. export (:func:`training.export.export_model`) into ``--out`` (default
   ``sjtui/data/models/``) with the training summary and the evaluation figures in the
   manifest; the torch checkpoint is copied beside it
   (``checkpoint-<version>.pt``, listed in the manifest) so ``sjtui train``
   can fine-tune it.

``--compare`` instead trains the three losses of :mod:`training.losses`
with the same budget and writes ``loss_comparison.png``/``.json``.
``--finetune LABELS_DB`` fine-tunes the shipped model on the ratings of a
labels database (what ``sjtui train`` runs).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from training import data as D
from training import evaluate as E
from training import targets as T
from training.losses import LOSSES
from training.towers import TwoTower, build_two_tower, load_checkpoint, save_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.1.0"
DEFAULTS = {
    "n_train": 700,
    "n_val": 60,
    "n_test": 120,
    "steps": 3000,
    "batch_guitars": 96,
    "random_grooves": 64,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "eval_every": 150,
    "seed": 0,
}
MAX_LOG_SCALE = float(np.log(100.0))


def set_threads() -> None:
    """One intra-op thread: on the shared 2-core machine two threads measured ~10x slower per step
    (contention with the other processes), and one thread keeps runs bit-reproducible."""
    torch.set_num_threads(1)


def _tensors(arrays: dict[str, np.ndarray], rows=None) -> dict[str, torch.Tensor]:
    if rows is None:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in arrays.items()}


def guitar_arrays(guitars: D.GuitarSet) -> dict[str, np.ndarray]:
    return {"grid": guitars.grid, "context": guitars.context}


def groove_arrays(grooves: D.GrooveSet) -> dict[str, np.ndarray]:
    return {"grid": grooves.grid, "descriptors": grooves.descriptors, "context": grooves.context}


@torch.no_grad()
def embed_numpy(model: TwoTower, guitar_inputs: dict, groove_inputs: dict, batch: int = 512):
    """``(guitar (n, 128), groove (m, 128))`` float32 numpy embeddings of numpy inputs."""
    model.eval()
    g = [
        model.guitar(**_tensors(guitar_inputs, slice(i, i + batch))).numpy()
        for i in range(0, len(guitar_inputs["grid"]), batch)
    ]
    d = [
        model.groove(**_tensors(groove_inputs, slice(i, i + batch))).numpy()
        for i in range(0, len(groove_inputs["grid"]), batch)
    ]
    return np.concatenate(g), np.concatenate(d)


class PairSampler:
    """Batches of B guitar rows x M groove columns with their weak ratings.

    Columns: one positive of each guitar row (rating >= 4, when it has one),
    one tempo/meter-fitting groove of each row (mostly harder negatives), and
    ``random_grooves`` uniform grooves. Ratings of all B x M cells come from
    the full matrix, so every cell is labelled (no false negatives).
    """

    def __init__(
        self, ratings: np.ndarray, allowed: np.ndarray, batch_guitars: int, random_grooves: int, seed: int
    ):
        self.ratings = ratings
        self.rng = np.random.default_rng([seed, 99])
        self.positives = [np.flatnonzero(row >= T.POSITIVE_RATING) for row in ratings]
        self.allowed = [np.flatnonzero(row) for row in allowed]
        self.rows = np.flatnonzero([a.size > 0 for a in self.allowed])
        self.batch_guitars = batch_guitars
        self.random_grooves = random_grooves

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.rng
        rows = rng.choice(self.rows, size=min(self.batch_guitars, self.rows.size), replace=False)
        cols = []
        for r in rows:
            pos = self.positives[r]
            if pos.size:
                cols.append(int(pos[rng.integers(pos.size)]))
            allowed = self.allowed[r]
            cols.append(int(allowed[rng.integers(allowed.size)]))
        cols += rng.integers(0, self.ratings.shape[1], self.random_grooves).tolist()
        cols = np.unique(np.array(cols))
        return rows, cols, self.ratings[np.ix_(rows, cols)]


def validation_figures(model, val, seed: int = 0) -> dict:
    g_emb, d_emb = embed_numpy(model, val["guitar_inputs"], val["groove_inputs"])
    return E.ranking_metrics(g_emb @ d_emb.T, val["ratings"], val["allowed"], val["tempo"], val["meter"])


def val_score(figures: dict) -> float:
    return figures["recall_at_10"] + figures["mrr"] + figures["roc_auc"]


def train_loop(
    model: TwoTower,
    train: dict,
    val: dict,
    loss_name: str = "rated",
    steps: int = DEFAULTS["steps"],
    seed: int = 0,
    lr: float = DEFAULTS["lr"],
    weight_decay: float = DEFAULTS["weight_decay"],
    batch_guitars: int = DEFAULTS["batch_guitars"],
    random_grooves: int = DEFAULTS["random_grooves"],
    eval_every: int = DEFAULTS["eval_every"],
    progress=None,
) -> dict:
    """Train ``model`` in place (it ends with the best validation state); returns the history.

    ``train``/``val``: dicts with ``guitar_inputs``, ``groove_inputs`` (numpy
    encoder inputs), ``ratings`` (n_guitar, n_groove), ``allowed``, ``tempo``, ``meter``.
    """
    set_threads()
    torch.manual_seed(seed)
    loss_fn = LOSSES[loss_name]
    sampler = PairSampler(train["ratings"], train["allowed"], batch_guitars, random_grooves, seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps))
    )
    history = {"step": [], "loss": [], "val_step": [], "val": [], "loss_name": loss_name}
    best = (-np.inf, None, 0)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        model.train()
        rows, cols, ratings = sampler.sample()
        g = model.guitar(**_tensors(train["guitar_inputs"], rows))
        d = model.groove(**_tensors(train["groove_inputs"], cols))
        loss, _parts = loss_fn(g @ d.T, torch.from_numpy(ratings), model.log_scale)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            model.log_scale.clamp_(max=MAX_LOG_SCALE)
        history["step"].append(step)
        history["loss"].append(float(loss.detach()))
        if step % eval_every == 0 or step == steps:
            figures = validation_figures(model, val)
            history["val_step"].append(step)
            history["val"].append(figures)
            score = val_score(figures)
            if score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()), step)
        if progress:
            progress(step, steps, float(loss.detach()), history["val"][-1] if history["val"] else None)
    model.load_state_dict(best[1])
    model.eval()
    history["best_step"] = best[2]
    history["best_val"] = history["val"][history["val_step"].index(best[2])]
    history["seconds"] = time.perf_counter() - started
    return history


# ---------------------------------------------------------------------------- fine-tuning


def finetune(
    model: TwoTower,
    guitar_inputs: dict,
    groove_inputs: dict,
    pairs: list[tuple[int, int, float]],
    seed: int = 0,
    steps: int = 150,
    lr: float = 1e-3,
    anchor: float = 1.0,
    progress=None,
) -> dict:
    """Fine-tune ``model`` in place on rated pairs ``(guitar row, groove row, rating 0..5)``.

    Full-batch: every rated guitar row against every rated groove, the
    rated cells known (loss :func:`training.losses.rated_contrastive` with
    a ``known`` mask: positives rating >= 4 against the same window's
    known lower-rated grooves, pairs of one window ordered by rating). An
    L2 pull towards the starting weights (``anchor``, summed squared
    difference) keeps what the bootstrap taught where the ratings say
    nothing. 200 ratings: a few seconds on one core.
    """
    from training.losses import rated_contrastive

    set_threads()
    torch.manual_seed(seed)
    if not pairs:
        raise ValueError("no rated pairs to fine-tune on")
    g_rows = np.unique([p[0] for p in pairs])
    d_rows = np.unique([p[1] for p in pairs])
    g_pos = {r: i for i, r in enumerate(g_rows.tolist())}
    d_pos = {r: i for i, r in enumerate(d_rows.tolist())}
    ratings = torch.zeros((g_rows.size, d_rows.size))
    known = torch.zeros((g_rows.size, d_rows.size), dtype=torch.bool)
    for gi, dj, rating in pairs:
        ratings[g_pos[gi], d_pos[dj]] = float(rating)
        known[g_pos[gi], d_pos[dj]] = True
    g_in = _tensors(guitar_inputs, g_rows)
    d_in = _tensors(groove_inputs, d_rows)
    start = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    started = time.perf_counter()
    for step in range(steps):
        model.train()
        scores = model.guitar(**g_in) @ model.groove(**d_in).T
        loss, _ = rated_contrastive(scores, ratings, model.log_scale, known=known)
        pull = sum(((p - p0) ** 2).sum() for p, p0 in zip(model.parameters(), start))
        total = loss + anchor * pull
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        if progress:
            progress(step + 1, steps, float(loss.detach()))
    model.eval()
    return {
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "final_loss": float(loss.detach()),
        "n_pairs": len(pairs),
        "n_guitar": int(g_rows.size),
        "n_groove": int(d_rows.size),
    }


# ---------------------------------------------------------------------------- plots


def plot_history(histories: dict[str, dict], path: Path, title: str) -> None:
    """Training loss and validation figures per run (one line per history)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for name, h in histories.items():
        loss = np.asarray(h["loss"])
        k = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        axes[0].plot(np.arange(smooth.size) + k, smooth, label=name)
        for ax, metric in zip(axes[1:], ("recall_at_10", "mrr", "roc_auc")):
            ax.plot(h["val_step"], [v[metric] for v in h["val"]], marker="o", ms=3, label=name)
            ax.set_title(f"validation {metric}")
            ax.set_xlabel("step")
    axes[0].set_title("training loss (smoothed)")
    axes[0].set_xlabel("step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------- data assembly


def side_of(guitars: D.GuitarSet) -> T.GuitarSide:
    return T.GuitarSide(guitars.grid, guitars.context, guitars.bpm, guitars.meter, guitars.style)


def groove_side_of(grooves: D.GrooveSet) -> T.GrooveSide:
    return T.GrooveSide(grooves.grid, grooves.context, grooves.bpm, grooves.meter, grooves.style)


def pair_data(guitars: D.GuitarSet, grooves: D.GrooveSet) -> dict:
    g, d = side_of(guitars), groove_side_of(grooves)
    tempo, meter = E.fit_matrices(g, d)
    return {
        "guitar_inputs": guitar_arrays(guitars),
        "groove_inputs": groove_arrays(grooves),
        "ratings": T.ratings(g, d),
        "allowed": tempo & meter,
        "tempo": tempo,
        "meter": meter,
        "guitar_side": g,
        "groove_side": d,
    }


def load_all(args, console) -> tuple[dict, dict, dict]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.perf_counter()
    grooves = D.groove_sets(args.cache, args.gmd)
    console.print(
        f"grooves: train {len(grooves['train'])} (GMD train + built-ins), val {len(grooves['val'])}, "
        f"test {len(grooves['test'])} (GMD test, never trained on) [{time.perf_counter() - t0:.1f} s]"
    )
    sets = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        for split, n in (("train", args.n_train), ("val", args.n_val), ("test", args.n_test)):
            task = bar.add_task(f"guitar takes ({split})", total=n)
            sets[split] = D.guitar_set(
                D.make_specs(split, n, args.seed),
                args.cache,
                args.workers,
                lambda done, total, task=task: bar.update(task, completed=done),
            )
    console.print(
        "guitar windows: "
        + ", ".join(f"{k} {len(v)}" for k, v in sets.items())
        + f" [{time.perf_counter() - t0:.1f} s]"
    )
    train = pair_data(sets["train"], grooves["train"])
    val = pair_data(sets["val"], grooves["val"])
    test = pair_data(sets["test"], grooves["test"])
    for name, part in (("train", train), ("val", val), ("test", test)):
        allowed = part["allowed"]
        console.print(
            f"{name}: {allowed.sum()} tempo/meter-fitting pairs, positives {(part['ratings'] >= 4).sum()} "
            f"({(part['ratings'][allowed] >= 4).mean():.1%} of fitting), windows with a positive "
            f"{((part['ratings'] >= 4).any(axis=1)).sum()}/{allowed.shape[0]}"
        )
    return {"sets": sets, "grooves": grooves}, train, val | {"test": test}


def _progress_callback(bar, task):
    def update(step, total, loss, figures):
        text = f"loss {loss:.3f}"
        if figures:
            text += f"  val R@10 {figures['recall_at_10']:.3f} mrr {figures['mrr']:.3f} auc {figures['roc_auc']:.3f}"
        bar.update(task, completed=step, info=text)

    return update


def train_with_bar(model, train, val, console, loss_name, steps, args, label) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    ) as bar:
        task = bar.add_task(label, total=steps, info="")
        return train_loop(
            model,
            train,
            val,
            loss_name,
            steps,
            args.seed,
            lr=args.lr,
            eval_every=args.eval_every,
            progress=_progress_callback(bar, task),
        )


def summary_text(info: dict, train: dict, sets: dict, grooves: dict, history: dict, loss_name: str) -> str:
    return (
        "trained on weak targets only (no human ratings): "
        f"{len(sets['train'])} generated guitar windows ({len(sets['train'].specs)} takes: 12 riff styles, "
        "GM guitar programs through TimGM6mb and FluidR3_GM with FluidSynth, and a Karplus-Strong synth; "
        "augmented with EQ/compression/distortion/chorus/reverb/gain/noise and shifted start points) x "
        f"{len(grooves['train'])} grooves (Groove MIDI Dataset train split 4-bar beat windows + built-ins); "
        f"{int(train['allowed'].sum())} tempo/meter-fitting pairs. "
        + T.describe()
        + f" Loss: {loss_name} (graded multi-positive InfoNCE with in-batch negatives + rating-ordered pairwise term within and across windows), "
        f"{history['best_step']} of {len(history['step'])} steps kept (early stopping on the GMD validation split "
        f"x {len(sets['val'])} validation guitar windows). GMD test split and the test guitar takes "
        f"(seeds disjoint, renderers {sorted(D.HELD_OUT_RENDERERS)} never trained on) were held out."
    )


def run_training(args, console) -> int:
    set_threads()
    info, train, val = load_all(args, console)
    test = val.pop("test")
    sets, grooves = info["sets"], info["grooves"]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = Path(args.runs) / (("compare-" if args.compare else "") + stamp)
    run_dir.mkdir(parents=True, exist_ok=True)

    if args.compare:
        histories, results = {}, {}
        for loss_name in ("rated", "rated_top", "infonce", "mse"):
            model = build_two_tower(args.seed)
            histories[loss_name] = train_with_bar(
                model, train, val, console, loss_name, args.compare_steps, args, f"{loss_name:8s}"
            )
            g_emb, d_emb = embed_numpy(model, test["guitar_inputs"], test["groove_inputs"])
            results[loss_name] = {
                "best_step": histories[loss_name]["best_step"],
                "validation": histories[loss_name]["best_val"],
                "test": E.evaluate_embeddings(
                    g_emb, d_emb, sets["test"], test["guitar_side"], test["groove_side"], test["ratings"]
                )["model"],
                "seconds": histories[loss_name]["seconds"],
            }
            console.print(f"{loss_name}: val {histories[loss_name]['best_val']}")
        plot_history(
            histories,
            run_dir / "loss_comparison.png",
            f"loss comparison, {args.compare_steps} steps each, same data/seed/batches",
        )
        (run_dir / "loss_comparison.json").write_text(
            json.dumps({"steps": args.compare_steps, "results": results, "histories": histories}, indent=1)
        )
        console.print(json.dumps(results, indent=1))
        console.print(f"figures: {run_dir / 'loss_comparison.png'}")
        return 0

    model = build_two_tower(args.seed)
    history = train_with_bar(model, train, val, console, args.loss, args.steps, args, "training")
    console.print(f"best validation (step {history['best_step']}): {history['best_val']}")
    plot_history(
        {args.loss: history},
        run_dir / "training_curve.png",
        f"sjtui two-tower {VERSION}: {args.loss} loss, seed {args.seed}",
    )
    (run_dir / "history.json").write_text(json.dumps(history, indent=1))

    # evaluation on the held-out data
    g_emb, d_emb = embed_numpy(model, test["guitar_inputs"], test["groove_inputs"])
    evaluation = E.evaluate_embeddings(
        g_emb, d_emb, sets["test"], test["guitar_side"], test["groove_side"], test["ratings"], args.seed
    )
    evaluation["personalisation"] = E.personalisation_check(
        model,
        test["guitar_inputs"],
        test["groove_inputs"],
        test["guitar_side"],
        test["groove_side"],
        test["ratings"],
        args.seed,
    )
    evaluation["targets_met"] = E.beats_every_baseline(evaluation)
    evaluation["status"] = "evaluated"
    evaluation["summary"] = (
        "held-out: GMD test split grooves x test guitar takes (disjoint seeds; half through renderers never "
        "trained on); relevant = weak target >= 4; figures measure agreement with the weak targets, not human "
        "judgement; selection uses the tempo/meter hard filter of sjtui.model.fit"
    )
    training = {
        "status": "trained",
        "summary": summary_text(info, train, sets, grooves, history, args.loss),
        "weak_targets": T.describe(),
        "human_ratings": 0,
        "loss": args.loss,
        "steps": len(history["step"]),
        "best_step": history["best_step"],
        "seconds": history["seconds"],
        "seed": args.seed,
        "n_guitar_windows": {k: len(v) for k, v in sets.items()},
        "n_grooves": {k: len(v) for k, v in grooves.items()},
        "held_out_renderers": sorted(D.HELD_OUT_RENDERERS),
        "analysis_sources_sha256": D.analysis_sources_sha256(),
        "analysis_sources": list(D.ANALYSIS_SOURCES),
        "validation": history["best_val"],
        "command": "python -m training.train " + " ".join(sys.argv[1:]),
    }
    checkpoint = run_dir / "model.pt"
    save_checkpoint(checkpoint, model, training, evaluation)
    latest = Path(args.runs) / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.name)
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=1))
    console.print(
        json.dumps(
            {k: evaluation[k] for k in ("model", "baselines", "personalisation", "targets_met")}, indent=1
        )
    )
    if args.no_export:
        console.print(f"run: {run_dir} (not exported)")
        return 0

    from sjtui.model.manifest import sha256_of
    from training.export import export_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reference_name = f"analysis-reference-{VERSION}.npz"
    analysis_reference = run_dir / reference_name
    np.savez_compressed(analysis_reference, **D.analysis_reference_arrays())
    staged_reference = out / (reference_name + ".new")
    shutil.copyfile(analysis_reference, staged_reference)
    training["analysis_reference"] = {
        "file": reference_name,
        "sha256": sha256_of(staged_reference),
        "size_bytes": staged_reference.stat().st_size,
        "takes": [list(t) for t in D.ANALYSIS_REFERENCE_TAKES],
    }
    ckpt_name = f"checkpoint-{VERSION}.pt"
    staged = out / (ckpt_name + ".new")
    shutil.copyfile(checkpoint, staged)
    training["checkpoint"] = {
        "file": ckpt_name,
        "sha256": sha256_of(staged),
        "size_bytes": staged.stat().st_size,
    }
    real = {
        "guitar": {"test_windows32": _tensors(test["guitar_inputs"], slice(0, 32))},
        "groove": {"gmd_test32": _tensors(test["groove_inputs"], slice(0, 32))},
    }
    manifest = export_model(
        model,
        out,
        version=VERSION,
        training=training,
        evaluation=evaluation,
        real_inputs=real,
        seed=args.seed,
    )
    target = out / ckpt_name
    if target.exists() and sha256_of(target) != training["checkpoint"]["sha256"]:
        os.replace(target, out / f"{ckpt_name}.bak-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
    os.replace(staged, target)
    target = out / reference_name
    if target.exists() and sha256_of(target) != training["analysis_reference"]["sha256"]:
        os.replace(target, out / f"{reference_name}.bak-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
    os.replace(staged_reference, target)
    console.print(f"installed {manifest['name']} {manifest['version']} into {out}; run: {run_dir}")
    return 0


# ---------------------------------------------------------------------------- labels DB


HELDOUT_SHARE = 0.2
MIN_HELDOUT_CLIPS = 2


def split_rated_clips(clips: list[str], share: float = HELDOUT_SHARE) -> tuple[list[str], list[str]]:
    """(fine-tune clips, held-out clips): a fixed share of the rated clips, chosen by their hash.

    The choice depends only on each clip's content hash, so a clip stays on
    the same side as more ratings arrive, and no window is both trained on
    and used to judge the result.
    """
    ordered = sorted(clips, key=lambda c: hashlib.sha256(("heldout:" + c).encode()).hexdigest())
    n_held = max(MIN_HELDOUT_CLIPS, int(round(share * len(ordered))))
    held = set(ordered[:n_held])
    return [c for c in clips if c not in held], [c for c in clips if c in held]


def rating_agreement(scores: np.ndarray, pairs: list[tuple[int, int, float]]) -> dict:
    """How often a model orders a player's ratings the same way, per guitar window.

    ``scores``: (n_guitar, n_groove) model scores; ``pairs``: (guitar row,
    groove row, rating). For every two grooves rated differently with the
    same guitar window, the pair counts as agreed when the higher-rated one
    scores higher (ties in score count half). Returns ``{"pair_accuracy",
    "n_comparisons"}``; 0 comparisons gives accuracy None.
    """
    by_window: dict[int, list[tuple[int, float]]] = {}
    for gi, dj, rating in pairs:
        by_window.setdefault(gi, []).append((dj, rating))
    agreed = total = 0.0
    for gi, rated in by_window.items():
        for a in range(len(rated)):
            for b in range(a + 1, len(rated)):
                (da, ra), (db, rb) = rated[a], rated[b]
                if ra == rb:
                    continue
                diff = (scores[gi, da] - scores[gi, db]) * (1 if ra > rb else -1)
                agreed += 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0
                total += 1
    return {"pair_accuracy": (agreed / total) if total else None, "n_comparisons": int(total)}


def _torch_scores(model: TwoTower, g_in: dict, d_in: dict) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model.scores(_tensors(g_in), _tensors(d_in)).numpy()


def _active_user_agreement(out_dir: Path, fingerprints, grooves, held_pairs, log) -> dict | None:
    """Held-out agreement of the user's current model in ``out_dir`` (ONNX), or None when there is none."""
    from sjtui.model.errors import ModelError
    from sjtui.model.runtime import EncoderPair

    if not (Path(out_dir) / "manifest.json").is_file():
        return None
    try:
        current = EncoderPair(out_dir)
    except ModelError as error:
        log(f"your current model cannot be loaded ({error}); comparing with the starting model only")
        return None
    scores = current.embed_guitar(fingerprints) @ current.embed_grooves(grooves).T
    return rating_agreement(scores, held_pairs)


def finetune_from_labels(
    labels_db, *, library=None, base_dir=None, out_dir=None, steps: int = 150, seed: int = 0, log=print
) -> dict:
    """Fine-tune the shipped model on the ratings of a labels database and install it as the user's model.

    ``labels_db``: the labels SQLite file (or its folder); ``library``: the
    groove library (default: the user's); ``base_dir``: the model to start
    from (default ``sjtui/data/models/``: its checkpoint listed in the manifest);
    ``out_dir``: where to install (default the user's model folder; files
    replaced are kept as ``.bak-<stamp>``). Ratings whose groove is no longer
    in the library, or whose clip has no stored fingerprint, are skipped and
    counted. Raises :class:`sjtui.errors.SjtuiError` subclasses with advice.
    """
    from sjtui.errors import SjtuiError
    from sjtui.grooves.store import GrooveStore
    from sjtui.labels.store import LabelStore
    from sjtui.model import inputs as layout
    from sjtui.model.errors import ModelError
    from sjtui.model.manifest import read_manifest, verify_file
    from sjtui.model.runtime import SHIPPED_MODEL_DIR, user_model_dir
    from training.export import export_model

    base_dir = Path(base_dir or SHIPPED_MODEL_DIR)
    out_dir = Path(out_dir or user_model_dir())
    manifest = read_manifest(base_dir)
    entry = manifest.get("training", {}).get("checkpoint")
    if not isinstance(entry, dict):
        raise ModelError(
            f"model {base_dir} ships no torch checkpoint to fine-tune; retrain with `python -m training.train`"
        )
    checkpoint = verify_file(base_dir, entry, "model checkpoint")
    with GrooveStore(library) if library is not None else GrooveStore() as store:
        with LabelStore.open(labels_db, groove_store=store, readonly=True) as labels:
            rated = list(labels.ratings(store))
        if not rated:
            raise SjtuiError(
                f"the labels database {labels_db} holds no ratings; rate some pairs first (the labelling mode writes them), "
                "then run `sjtui train` again"
            )
        missing_groove = [r for r in rated if r.groove_id is None]
        no_fp = [r for r in rated if r.groove_id is not None and r.fingerprint is None]
        usable = [r for r in rated if r.groove_id is not None and r.fingerprint is not None]
        if missing_groove:
            log(
                f"skipped {len(missing_groove)} rating(s) of grooves no longer in the library "
                f"(e.g. {missing_groove[0].groove})"
            )
        if no_fp:
            log(f"skipped {len(no_fp)} rating(s) whose clip has no stored fingerprint")
        if not usable:
            raise SjtuiError(
                f"none of the {len(rated)} ratings in {labels_db} can be used (grooves gone from the library or "
                "clips without fingerprints); re-import the grooves you rated or rate again"
            )
        clips = sorted({r.clip_hash for r in usable})
        groove_ids = sorted({int(r.groove_id) for r in usable})
        fp_of = {r.clip_hash: r.fingerprint for r in usable}
        grooves = []
        for gid in groove_ids:
            groove = store.get(gid)
            if groove.bars > layout.MODEL_BARS:
                groove = groove.bar_slice(0, layout.MODEL_BARS)
            grooves.append(groove)
    g_in = layout.guitar_inputs([fp_of[c] for c in clips])
    d_in = layout.groove_inputs(grooves, np.stack([g.extra["descriptors"] for g in grooves]))
    clip_row = {c: i for i, c in enumerate(clips)}
    groove_row = {g: i for i, g in enumerate(groove_ids)}
    train_clips, held_clips = split_rated_clips(clips)
    held_set = set(held_clips)
    pairs = [(clip_row[r.clip_hash], groove_row[int(r.groove_id)], float(r.rating)) for r in usable]
    train_pairs = [p for p in pairs if clips[p[0]] not in held_set]
    held_pairs = [p for p in pairs if clips[p[0]] in held_set]
    model, meta = load_checkpoint(checkpoint)
    before = rating_agreement(_torch_scores(model, g_in, d_in), held_pairs)
    if not train_pairs or before["n_comparisons"] == 0:
        raise SjtuiError(
            f"too few ratings to fine-tune and check the result: {len(clips)} rated guitar clip(s); sjtui holds "
            f"out {max(MIN_HELDOUT_CLIPS, int(round(HELDOUT_SHARE * len(clips))))} of them to judge the new model "
            "and needs, on those, two grooves rated differently with the same clip. Rate more pairs "
            "(at least 5 clips, 3 grooves each) and run `sjtui train` again; nothing was installed"
        )
    current = _active_user_agreement(out_dir, [fp_of[c] for c in clips], grooves, held_pairs, log)
    info = finetune(model, g_in, d_in, train_pairs, seed=seed, steps=steps)
    after = rating_agreement(_torch_scores(model, g_in, d_in), held_pairs)
    reference = max(before["pair_accuracy"], current["pair_accuracy"] if current else -1.0)
    info.update(heldout_clips=len(held_clips), heldout_ratings=len(held_pairs))
    log(
        f"held-out ratings ({len(held_pairs)} on {len(held_clips)} clips): pair accuracy "
        f"{before['pair_accuracy']:.3f} before (starting model)"
        + (f", {current['pair_accuracy']:.3f} for your current model" if current else "")
        + f", {after['pair_accuracy']:.3f} after fine-tuning"
    )
    if after["pair_accuracy"] < reference:
        return {
            "out_dir": str(out_dir),
            "installed": False,
            "reason": f"the fine-tuned model agrees less with your held-out ratings ({after['pair_accuracy']:.3f}) "
            f"than the model you have ({reference:.3f}); kept the current model",
            "heldout": {"before": before, "current": current, "after": after},
            "n_ratings": len(pairs),
            "seconds": info["seconds"],
        }
    training = dict(meta["training"])
    training.pop("checkpoint", None)
    training.update(
        status="trained",
        summary=f"fine-tuned on {len(pairs)} human ratings ({len(clips)} clips, {len(groove_ids)} grooves) from "
        f"{labels_db}, starting from {manifest['name']} {manifest['version']} ({training.get('summary', '')})",
        human_ratings=len(pairs),
        skipped_ratings={"groove_not_in_library": len(missing_groove), "no_fingerprint": len(no_fp)},
        finetune=info,
    )
    version = f"{manifest['version']}+user.{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
    evaluation = {
        "status": "evaluated on held-out ratings",
        "summary": "fine-tuned on the user's ratings; judged on the clips held out from fine-tuning "
        "(pair_accuracy: share of differently rated groove pairs of one clip that the model orders as rated); "
        "the shipped model's figures do not apply",
        "heldout_pair_accuracy_before": before["pair_accuracy"],
        "heldout_pair_accuracy_current": None if current is None else current["pair_accuracy"],
        "heldout_pair_accuracy": after["pair_accuracy"],
        "heldout_comparisons": after["n_comparisons"],
    }
    exported = export_model(
        model, out_dir, version=version, training=training, evaluation=evaluation, seed=seed
    )
    return {
        "out_dir": str(out_dir),
        "installed": True,
        "version": exported["version"],
        "heldout": {"before": before, "current": current, "after": after},
        "n_ratings": len(pairs),
        "skipped": training["skipped_ratings"],
        "seconds": info["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from sjtui.model.runtime import SHIPPED_MODEL_DIR

    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=SHIPPED_MODEL_DIR, help="model directory to install into"
    )
    parser.add_argument("--runs", type=Path, default=REPO_ROOT / "runs", help="where run folders go")
    parser.add_argument("--cache", type=Path, default=D.DEFAULT_CACHE_DIR, help="generated-data cache")
    parser.add_argument(
        "--gmd", type=Path, default=D.DEFAULT_GMD_DIR, help="Groove MIDI Dataset folder or zip"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes generating guitar takes")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="rated")
    parser.add_argument(
        "--compare", action="store_true", help="train every loss with the same budget; report"
    )
    parser.add_argument("--compare-steps", type=int, default=600)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument(
        "--finetune",
        type=Path,
        default=None,
        metavar="LABELS_DB",
        help="fine-tune the shipped model on a labels database instead of training",
    )
    parser.add_argument("--library", type=Path, default=None, help="with --finetune: the groove library")
    for key in ("n_train", "n_val", "n_test", "steps", "eval_every", "seed"):
        parser.add_argument("--" + key.replace("_", "-"), type=int, default=DEFAULTS[key])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    if args.finetune is not None:
        from sjtui.errors import SjtuiError

        try:
            result = finetune_from_labels(args.finetune, library=args.library, log=console.print)
        except SjtuiError as error:
            console.print(f"error: {error}")
            return 2
        print(json.dumps(result, indent=2))
        return 0
    return run_training(args, console)


if __name__ == "__main__":
    sys.exit(main())
