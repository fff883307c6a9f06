"""Linear programs with HiGHS (``highspy``), quietly: what EdgeFlow's partitioning and the
workload's lower bound solve."""

from __future__ import annotations

import os
import sys

from edgeweave.errors import PlanError

INFINITY = 1e30  # what HiGHS reads as no bound


def solve_lp(size: int, rows: list[tuple[dict[int, float], float]], lower: list[float],
           upper: list[float], objective: dict[int, float], equal_last: bool,
           name: str) -> list[float]:
    """Minimise ``sum(coef * var)`` of ``objective`` over ``size`` variables within
    ``lower`` and ``upper``, subject to ``sum(coef * var) <= bound`` for each row (the last
    one an equality when ``equal_last``), with HiGHS; the values of the variables."""
    import highspy
    import numpy as np

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = size, len(rows)
    cost = np.zeros(size)
    for column, value in objective.items():
        cost[column] = value
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, np.array(lower), np.array(upper)
    bounds = np.array([bound for _, bound in rows])
    row_lower = np.full(len(rows), -INFINITY)
    if equal_last:
        row_lower[-1] = bounds[-1]
    lp.row_lower_, lp.row_upper_ = row_lower, bounds
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.cumsum([0, *(len(c) for c, _ in rows)])
    lp.a_matrix_.index_ = np.array([i for c, _ in rows for i in c], dtype=np.int32)
    lp.a_matrix_.value_ = np.array([v for c, _ in rows for v in c.values()])
    solver = _silent_highs(highspy)
    solver.setOptionValue("output_flag", False)
    solver.passModel(lp)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise PlanError(f"The LP for {name} has no optimum: "
                        f"{solver.modelStatusToString(solver.getModelStatus())}.")
    return list(solver.getSolution().col_value)


def _silent_highs(highspy):
    """A HiGHS solver, made with the C library's stdout pointed at /dev/null: the first one
    made in a process prints a banner there (before any option can be set), which would
    break ``--json`` output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            return highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
