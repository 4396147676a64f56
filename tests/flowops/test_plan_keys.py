"""Plans and step keys, in plain Python (no Django)."""

from flowops import Step, step
from flowops._plan import Call, Chain, Fork, Plan


@step
def parse(text: str) -> int:
    return int(text)


@step
def double(x: int) -> int:
    return x * 2


@step
def inc(x: int) -> int:
    return x + 1


def test_keys_follow_node_paths():
    # given
    fan = Step.parallel("fan", {"d": double, "i": inc})
    sign = Step.branch_on("sign", lambda x, ctx: "big", {"big": double, "small": inc})
    grow = Step.loop_until("grow", inc, lambda out, ctx: out > 3)
    each = Step.map_over("each", double)
    plan = Plan(parse >> fan >> sign >> grow >> each >> double)

    # when
    keys = [row.key for row in plan.initial_rows()]

    # then
    assert keys == ["parse", "fan", "fan/d/double", "fan/i/inc", "sign", "sign@choice",
                    "grow", "grow[0]/inc", "grow[0]@exit", "each", "each@items", "double"]


def test_locate_resolves_dynamic_keys():
    grow = Step.loop_until("grow", inc, lambda out, ctx: out > 3)
    each = Step.map_over("each", double >> inc)
    plan = Plan(parse >> grow >> each)

    ref, tag = plan.locate("each[2]/inc")
    assert (ref.key, tag, ref.node.kind) == ("each[2]/inc", None, "step")
    ref, tag = plan.locate("grow[4]@exit")
    assert (ref.key, tag) == ("grow", "exit:4")
    assert plan.task_for("each@items") == "decide"
    assert plan.task_for("each") == "join"
    assert plan.predecessors("each[2]/double") == ["each@items"]
    assert plan.predecessors("each[2]/inc") == ["each[2]/double"]
    assert plan.predecessors("grow[1]/inc") == ["grow[0]@exit"]
    assert plan.predecessors("grow[0]/inc") == ["parse"]


def test_frontier_skips_completed_nodes():
    fan = Step.parallel("fan", {"d": double, "i": inc})
    plan = Plan(parse >> fan >> double)

    frontier = plan.frontier({"parse": "succeeded", "fan/d/double": "succeeded"}, {})

    assert frontier == Chain((
        Fork((Chain((Call("step", "fan/i/inc"),)),), Call("join", "fan")),
        Call("step", "double"),
        Call("finish", ""),
    ))


def test_repeated_sibling_names_get_a_suffix():
    plan = Plan(double >> inc >> double >> double)

    assert [r.key for r in plan.initial_rows()] == ["double", "inc", "double#2", "double#3"]
