"""tyr's resumable state on real weights (stories260K): a run stopped inside a target's ladder
construction or search and resumed from its folder produces byte-identical checkpoints to an
uninterrupted run, without rebuilding the layers it had finished (no ladder, no Gram pass) and
without restarting its search; a damaged file is rebuilt, never fatal; nothing is left behind.

The stop is the run's own mechanism: the observer's `should_stop` answers True after so many
`search` progress events, and the engine raises PruningStopped inside the next Gram pass (between
calibration batches) or before the next generation, as a cancel or a worker shutdown would."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import gisp.tyr.supernet as supernet
from gisp.config import PruneSettings
from gisp.errors import PruningStopped
from gisp.export import export_all
from gisp.pruner import PruneObserver
from gisp.run import run
from gisp.trajectory import Trajectory
from gisp.tyr.store import FOLDER

pytestmark = pytest.mark.integration

SETTINGS = dict(
    targets=[0.4],
    samples=8,
    seq_len=64,
    heldout=0,
    method="tyr",
    batch_size=4,
    tyr_levels=5,
    tyr_rounds=2,
    tyr_population=4,
    tyr_offspring=4,
    tyr_generations=3,
    tyr_stage_samples=[2, 8],
    tyr_stage_keep=[2],
    tyr_update_rounds=4,
)


class Stopper(PruneObserver):
    """Saves the trajectory as the CLI does; stops once `phase` events of round `round_` reach `after`."""

    def __init__(self, folder: Path, phase: str = "", round_: int = 1, after: int | None = None) -> None:
        self.folder, self.phase, self.round, self.after = folder, phase, round_, after
        self.events: list = []

    def should_stop(self) -> bool:
        seen = sum(1 for p in self.events if p.phase == self.phase and p.round == self.round)
        return self.after is not None and seen >= self.after

    def on_search(self, progress) -> None:
        self.events.append(progress)

    def on_step(self, report, trajectory: Trajectory) -> None:
        trajectory.save(self.folder / "trajectory.json")


def _count(mp: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the ladders built and the Gram passes made (the real functions still run)."""
    counts = {"ladders": 0, "grams": 0}
    real_ladder, real_gram = supernet.ladder, supernet.Supernet.gram

    def ladder(*args, **kwargs):
        counts["ladders"] += 1
        return real_ladder(*args, **kwargs)

    def gram(self, *args, **kwargs):
        counts["grams"] += 1
        return real_gram(self, *args, **kwargs)

    mp.setattr(supernet, "ladder", ladder)
    mp.setattr(supernet.Supernet, "gram", gram)
    return counts


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    return _count(monkeypatch)


def _run(model: Path, text: Path, folder: Path, observer: Stopper, resume: bool = False, **kw) -> Trajectory:
    settings = PruneSettings(**{**SETTINGS, **kw})
    saved = folder / "trajectory.json"
    previous = Trajectory.load(saved) if resume and saved.is_file() else None
    trajectory, _ = run(
        str(model), text, settings, observer, resume=previous, reconstruction_dir=folder, state_dir=folder
    )
    return trajectory


def _output(trajectory: Trajectory, folder: Path, out: Path) -> dict[str, str]:
    """sha256 of every file of every exported checkpoint, and of the re-solved tensors."""
    export_all(trajectory, out, tensors_dir=folder)
    files = {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file()}
    files.update({str(p.relative_to(folder)): p for p in (folder / "reconstruction").glob("*")})
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in sorted(files.items())}


def _layers(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / FOLDER).rglob("layer-*.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], int, int]:
    """The uninterrupted run's output, its ladder builds and Gram passes."""
    from tests.conftest import shared_path

    folder = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        counts = _count(mp)
        model, text = shared_path("models", "stories260K"), shared_path("data", "tinystories", "tinystories_val.txt")
        trajectory = _run(model, text, folder, Stopper(folder))
    assert not (folder / FOLDER).exists()  # dropped once registered
    return _output(trajectory, folder, folder / "out"), counts["ladders"], counts["grams"]


def test_stopped_during_ladders_resumes_without_rebuilding_finished_layers(
    stories_model: Path, stories_text: Path, tmp_path: Path, reference, builds: dict[str, int]
) -> None:
    output, ladders, grams = reference
    with pytest.raises(PruningStopped):
        _run(stories_model, stories_text, tmp_path, Stopper(tmp_path, "ladder", 1, after=2))
    assert _layers(tmp_path) == ["layer-0000.safetensors", "layer-0001.safetensors"]  # two layers were finished
    stopped = dict(builds)
    builds.update(ladders=0, grams=0)
    resumed = Stopper(tmp_path)
    trajectory = _run(stories_model, stories_text, tmp_path, resumed, resume=True)
    assert builds["ladders"] == ladders - 4 and builds["grams"] == grams - 4  # 2 layers × (attn, mlp) loaded
    layers = [(p.done, p.loaded) for p in resumed.events if p.phase == "ladder" and p.round == 1]
    assert layers == [(1, 1), (2, 2), (3, 2), (4, 2), (5, 2)]  # the progress says which were read back
    assert stopped["ladders"] == 4  # the stop came inside the third layer, before its ladders
    assert _output(trajectory, tmp_path, tmp_path / "out") == output
    assert not _layers(tmp_path)


def test_stopped_during_the_search_continues_it(
    stories_model: Path, stories_text: Path, tmp_path: Path, reference, builds: dict[str, int]
) -> None:
    output, ladders, _ = reference
    with pytest.raises(PruningStopped, match="generation 3"):
        _run(stories_model, stories_text, tmp_path, Stopper(tmp_path, "search", 2, after=2))
    assert builds["ladders"] == ladders  # both rounds' ladders were complete
    rounds = sorted((tmp_path / FOLDER).glob("target-*/round-*"))
    assert [p.name.split("-")[1] for p in rounds] == ["1", "2"]
    assert sorted(p.name for p in rounds[0].iterdir()) == ["result.json", "search.json"]  # its ladders dropped
    assert len(list(rounds[1].glob("layer-*"))) == len(list(rounds[1].glob("*"))) - 1  # and search.json
    builds.update(ladders=0, grams=0)
    resumed = Stopper(tmp_path)
    trajectory = _run(stories_model, stories_text, tmp_path, resumed, resume=True)
    assert builds["ladders"] == 0 and builds["grams"] == 0
    searched = [(p.round, p.done) for p in resumed.events if p.phase == "search"]
    assert searched == [(2, 3)]  # round 1's search was finished; round 2's went on from generation 3
    assert {p.round for p in resumed.events} == {2}  # round 1 was taken from its stored result
    assert _output(trajectory, tmp_path, tmp_path / "out") == output


STAGE = dict(tyr_refit="stage", tyr_finalists=3)  # the stage judges 3 finalists and the start


@pytest.fixture(scope="module")
def judged_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], int]:
    """The uninterrupted run whose finalists the stage judges: its output, and how many it judged."""
    from gisp.reconstruction.finalists import FinalistJudge
    from tests.conftest import shared_path

    folder, judged = tmp_path_factory.mktemp("judged"), []
    with pytest.MonkeyPatch.context() as mp:
        real = FinalistJudge.judge
        mp.setattr(FinalistJudge, "judge", lambda self, *a, **k: judged.append(1) or real(self, *a, **k))
        model, text = shared_path("models", "stories260K"), shared_path("data", "tinystories", "tinystories_val.txt")
        trajectory = _run(model, text, folder, Stopper(folder), **STAGE)
    assert not (folder / FOLDER).exists()
    return _output(trajectory, folder, folder / "out"), len(judged)


def test_stopped_while_the_stage_judges_the_finalists_judges_only_the_rest(
    stories_model: Path, stories_text: Path, tmp_path: Path, judged_reference, builds: dict[str, int], monkeypatch
) -> None:
    """Stopped inside the second finalist's refit: the first's verdict was stored, the resumed run
    reads it back (its progress says so), judges the others, and ends byte-identical."""
    from gisp.reconstruction.finalists import FinalistJudge

    output, judged = judged_reference
    assert judged == 4
    layers = 5  # stories260K
    with pytest.raises(PruningStopped, match="during reconstruction"):
        _run(stories_model, stories_text, tmp_path, Stopper(tmp_path, "finalists", 2, after=layers + 2), **STAGE)
    (stored,) = (tmp_path / FOLDER).glob("target-*/round-2-*/finalists.json")
    builds.update(ladders=0, grams=0)
    calls: list[int] = []
    real = FinalistJudge.judge
    monkeypatch.setattr(FinalistJudge, "judge", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    resumed = Stopper(tmp_path)
    trajectory = _run(stories_model, stories_text, tmp_path, resumed, resume=True, **STAGE)
    assert builds["ladders"] == 0 and not [p for p in resumed.events if p.phase == "search"]  # nothing searched again
    assert len(calls) == judged - 1
    finalists = [(p.done, p.loaded) for p in resumed.events if p.phase == "finalists"]
    assert finalists[0] == (layers, layers)  # the first verdict read back
    assert all(loaded == layers for _, loaded in finalists) and finalists[-1][0] == judged * layers
    assert _output(trajectory, tmp_path, tmp_path / "out") == output
    assert not stored.exists()


def test_damaged_ladder_files_are_rebuilt(
    stories_model: Path, stories_text: Path, tmp_path: Path, reference, builds: dict[str, int]
) -> None:
    output, ladders, _ = reference
    with pytest.raises(PruningStopped):
        _run(stories_model, stories_text, tmp_path, Stopper(tmp_path, "ladder", 1, after=3))
    files = sorted((tmp_path / FOLDER).rglob("layer-*.safetensors"))
    assert len(files) == 3
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])  # a torn write
    files[1].write_bytes(b"\x00" * 64)  # garbage
    builds.update(ladders=0, grams=0)
    trajectory = _run(stories_model, stories_text, tmp_path, Stopper(tmp_path), resume=True)
    assert builds["ladders"] == ladders - 2  # only the intact third layer was loaded
    assert _output(trajectory, tmp_path, tmp_path / "out") == output


def test_store_round_trip_and_refusals(tmp_path: Path) -> None:
    import torch

    from gisp.tyr.local import Rung
    from gisp.tyr.store import RoundStore, StoredRung
    from gisp.tyr.supernet import BlockLadder

    rungs = {
        4: Rung(list(range(4)), torch.randn(3, 8)),
        2: Rung([0, 3], torch.randn(3, 4)),
        0: Rung([], torch.zeros(3, 0)),
    }
    ladder_ = BlockLadder((1, "mlp"), 4, 2, 2, rungs)
    store = RoundStore(tmp_path, 0.5, 1, {"plan": [[1, "mlp", 2, 2]]})
    expected = {(1, "mlp"): (2, 2, [4, 2, 0])}
    saved = store.save_layer(1, [ladder_])
    loaded = store.load_layer(1, expected)
    assert loaded is not None
    for got in (saved[0], loaded[0]):
        assert all(isinstance(r, StoredRung) for r in got.rungs.values())
        for count, rung in rungs.items():
            assert got.rungs[count].kept == rung.kept and torch.equal(got.rungs[count].weight, rung.weight)
    assert store.load_layer(1, {(1, "mlp"): (3, 2, [5, 3, 1])}) is None  # another centre
    assert store.load_layer(1, {(1, "attn"): (2, 2, [4, 2, 0])}) is None  # other blocks
    other = RoundStore(tmp_path, 0.5, 1, {"plan": [[1, "mlp", 2, 1]]})  # another fingerprint, same round
    (other.folder).mkdir(parents=True)
    (other.folder / "layer-0001.safetensors").write_bytes((store.folder / "layer-0001.safetensors").read_bytes())
    assert other.load_layer(1, expected) is None  # a file copied from another round is refused
    other.prune_siblings()
    assert not store.folder.exists() and other.folder.exists()
    other.save_search({"generation": 2})
    assert other.load_search() == {"generation": 2}
    (other.folder / "search.json").write_text('{"generation": ')  # torn
    assert other.load_search() is None
    other.save_result({(1, "mlp"): 2}, 0.25)
    assert other.load_result([(1, "mlp")]) == ({(1, "mlp"): 2}, 0.25)
    assert other.load_result([(1, "mlp"), (1, "attn")]) is None
