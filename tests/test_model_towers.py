"""The towers can see what MODEL-NOTES says matters: where guitar onsets and kicks line up.

A short contrastive run on a synthetic task whose only signal is alignment:
each guitar window has low-band onsets on random 8th-note steps, and its
groove puts the kick on exactly those steps (hats and snare are the same for
every groove). A groove whose kick pattern is moved by one 8th note has the
same density, so only positions tell the two apart. The shipped
architecture (positions kept through pooling) must learn it; the same towers
with the step axis pooled away entirely (``step_pool=60``) cannot rank the
right groove first. This is a check of the architecture, not training of a
model: the weights are thrown away.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import Meter
from training.features import groove_batch, guitar_batch
from training.towers import GROOVE_CONFIG, GUITAR_CONFIG, TowerConfig, build_two_tower

METER = Meter(4, 4)
STEPS = 4 * METER.steps_per_bar


def _groove(onset_steps: np.ndarray) -> Groove:
    hits = np.zeros((STEPS, N_VOICES), dtype=bool)
    hits[::6, 2] = True  # hats on 8ths
    hits[12::24, 1] = True  # snare on 2 and 4
    hits[onset_steps % STEPS, 0] = True  # kick with the guitar
    return Groove(
        hits,
        hits * np.float32(0.8),
        np.zeros(hits.shape, np.float32),
        METER,
        120.0,
        name="kick-follows",
        source="builtin",
    )


def _case(rng: np.random.Generator) -> tuple[Fingerprint, np.ndarray]:
    steps = np.flatnonzero(rng.random(STEPS // 6) < 0.3) * 6
    if steps.size == 0:
        steps = np.array([0])
    onsets = np.zeros(steps.size, dtype=ONSET_DTYPE)
    onsets["band"] = 0
    onsets["bar"] = steps // METER.steps_per_bar
    onsets["step"] = steps % METER.steps_per_bar
    onsets["strength"] = rng.uniform(0.5, 1.0, steps.size)
    onsets["offset"] = np.clip(rng.normal(0.0, 0.1, steps.size), -0.5, 0.49)
    energy = (0.2 * rng.random((3, 4, METER.steps_per_bar))).astype(np.float32)
    return Fingerprint(energy, np.zeros_like(energy), onsets, METER, 120.0, 0, 0.0), steps


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    train = [_case(rng) for _ in range(1024)]
    test = [_case(rng) for _ in range(256)]
    return {
        "train_guitar": guitar_batch([fp for fp, _ in train]),
        "train_groove": groove_batch([_groove(steps) for _, steps in train]),
        "test_guitar": guitar_batch([fp for fp, _ in test]),
        "test_groove": groove_batch([_groove(steps) for _, steps in test]),
        "test_shifted": groove_batch([_groove(steps + 6) for _, steps in test]),
    }


def _fit_and_score(
    task, guitar_config: TowerConfig, groove_config: TowerConfig, steps: int = 120
) -> tuple[float, float]:
    torch.set_num_threads(1)
    model = build_two_tower(0, guitar_config, groove_config).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    n = task["train_guitar"]["grid"].shape[0]
    for _ in range(steps):
        index = torch.randint(0, n, (64,), generator=generator)
        logits = (
            model.scores(
                {k: v[index] for k, v in task["train_guitar"].items()},
                {k: v[index] for k, v in task["train_groove"].items()},
            )
            * model.log_scale.exp()
        )
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(64))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        scores = model.scores(
            task["test_guitar"], task["test_groove"]
        )  # (256, 256), own groove on the diagonal
        recall_at_1 = (scores.argmax(dim=1) == torch.arange(scores.shape[0])).float().mean().item()
        shifted = model.scores(task["test_guitar"], task["test_shifted"]).diagonal()
        aligned_wins = (scores.diagonal() > shifted).float().mean().item()
    return recall_at_1, aligned_wins


@pytest.mark.slow
def test_towers_learn_onset_kick_alignment_that_position_blind_pooling_cannot(task):
    recall, aligned_wins = _fit_and_score(task, GUITAR_CONFIG, GROOVE_CONFIG)
    blind = (
        TowerConfig(GUITAR_CONFIG.conv_channels, step_pool=60),
        TowerConfig(GROOVE_CONFIG.conv_channels, step_pool=60),
    )
    blind_recall, _ = _fit_and_score(task, *blind)
    # chance is 1/256 for recall@1 and 0.5 for aligned vs shifted
    assert recall > 0.6, recall
    assert aligned_wins > 0.95, aligned_wins
    assert blind_recall < 0.25 and recall > blind_recall + 0.4, (recall, blind_recall)
