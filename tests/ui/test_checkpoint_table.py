"""The checkpoint table, rendered by the dashboard's own template: a checkpoint whose refit the
guard rejected says so (its reason in the tooltip) instead of repeating its own figure as a
"before reconstruction" one, and the table says whether the job's family is nested."""

from __future__ import annotations

from gisp_service.api.ui.router import templates


def _row(**extra) -> dict:
    return {
        "id": "ckpt_x",
        "target_sparsity": 0.4,
        "sparsity": 0.4,
        "parameter_count": 10,
        "bytes": 40,
        "flops_per_token": 20,
        "metrics": {"perplexity": 30.0},
        "unreconstructed_metrics": {"perplexity": 30.0},
        "reconstruction_rejected": None,
        **extra,
    }


def render(row: dict, nested: bool = True) -> str:
    state = {"checkpoints": [row], "metric": "perplexity", "nested": nested}
    return templates.get_template("_checkpoints.html").render(state=state, selected=None, message=None)


def test_a_rejected_refit_is_shown_as_such() -> None:
    reason = "the refit raises the perplexity loss (3.84 vs 3.81 with the weights as cut)"
    html = render(_row(reconstruction_rejected=reason))
    assert "the refit was rejected" in html and reason in html
    assert "before reconstruction" not in html


def test_a_kept_refit_shows_the_figure_before_it() -> None:
    html = render(_row(metrics={"perplexity": 20.0}))
    assert "30.000 before reconstruction" in html and "rejected" not in html


def test_the_table_says_whether_the_family_is_nested() -> None:
    assert "Nested: each checkpoint is a subnetwork" in render(_row())
    assert "Not nested" in render(_row(), nested=False)
