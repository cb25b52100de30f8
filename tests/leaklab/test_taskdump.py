"""Tests of the lab's quote of a service's task dump (pure)."""

from leaklab.taskdump import last_task_groups, quote_dump

LONG = " > ".join(f"f{i}" for i in range(30))
DUMP = f"tasks: total 57\n\n40 @ {LONG}\n9 @ a > b\n5 @ c\n2 @ d\n1 @ e\n"


def test_quote_keeps_the_total_and_the_top_groups_shortened():
    assert quote_dump(DUMP, top=3) == [
        "tasks: total 57",
        "40 @ f0 > ... > f23 > f24 > f25 > f26 > f27 > f28 > f29",
        "9 @ a > b",
        "5 @ c",
    ]


def test_the_last_sample_with_task_groups_is_quoted():
    samples = [{"t_s": 1.0, "task_groups": ["tasks: total 3"]}, {"t_s": 2.0}, {"t_s": 3.0}]
    assert last_task_groups(samples) == ["tasks: total 3"]
    assert last_task_groups([{"t_s": 1.0}]) is None
