"""Plans and step keys, in plain Python (no Django)."""

import pytest

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
        Fork((Chain((Call("step", "fan/i/inc"),)),), Call("join", "fan"), positions=(1,)),
        Call("step", "double"),
        Call("finish", ""),
    ))


def test_repeated_sibling_names_get_a_suffix():
    plan = Plan(double >> inc >> double >> double)

    assert [r.key for r in plan.initial_rows()] == ["double", "inc", "double#2", "double#3"]


# -- nested combinations -----------------------------------------------------------------
def _nested_plan() -> Plan:
    fan = Step.parallel("fan", {"d": double, "i": inc >> inc})
    each = Step.map_over("each", fan >> double)
    grow = Step.loop_until("grow", each, lambda out, ctx: True)
    sign = Step.branch_on("sign", lambda x, ctx: "a",
                          {"a": double >> Step.parallel("p2", {"x": inc}), "b": inc},
                          default=double)
    return Plan(parse >> grow >> sign >> double)


def test_initial_rows_of_nested_combinations_stop_at_decisions():
    plan = _nested_plan()

    assert [(r.key, r.name, r.kind) for r in plan.initial_rows()] == [
        ("parse", "parse", "step"),
        ("grow", "grow", "loop"),
        ("grow[0]/each", "each", "map"),
        ("grow[0]/each@items", "each", "decision"),
        ("grow[0]@exit", "grow", "decision"),
        ("sign", "sign", "branch"),
        ("sign@choice", "sign", "decision"),
        ("double", "double", "step"),
    ]


def test_describe_lists_every_static_node_with_placeholders():
    plan = _nested_plan()

    assert list(plan.describe()) == [
        (0, "parse", "step"),
        (0, "grow", "loop"),
        (1, "grow[k]/each", "map"),
        (2, "grow[k]/each@items", "decision"),
        (2, "grow[k]/each[i]/fan", "parallel"),
        (3, "grow[k]/each[i]/fan/d/double", "step"),
        (3, "grow[k]/each[i]/fan/i/inc", "step"),
        (3, "grow[k]/each[i]/fan/i/inc#2", "step"),
        (2, "grow[k]/each[i]/double", "step"),
        (1, "grow[k]@exit", "decision"),
        (0, "sign", "branch"),
        (1, "sign@choice", "decision"),
        (1, "sign/a/double", "step"),
        (1, "sign/a/p2", "parallel"),
        (2, "sign/a/p2/x/inc", "step"),
        (1, "sign/b/inc", "step"),
        (1, "sign/_default/double", "step"),
        (0, "double", "step"),
    ]


def test_nested_dynamic_keys_locate_their_nodes():
    plan = _nested_plan()

    cases = {
        "grow[3]/each[12]/fan/i/inc#2": ("grow[3]/each[12]/fan/i/inc#2", None, "step"),
        "grow[0]/each[1]/fan": ("grow[0]/each[1]/fan", None, "join"),
        "grow[0]/each@items": ("grow[0]/each", "items", "decide"),
        "grow[2]@exit": ("grow", "exit:2", "decide"),
        "sign/a/p2/x/inc": ("sign/a/p2/x/inc", None, "step"),
        "sign/_default/double": ("sign/_default/double", None, "step"),
        "sign@choice": ("sign", "choice", "decide"),
        "sign": ("sign", None, "join"),
    }
    for key, (ref_key, tag, task) in cases.items():
        ref, found_tag = plan.locate(key)
        assert (ref.key, found_tag, plan.task_for(key)) == (ref_key, tag, task), key


def test_unknown_keys_raise_key_error():
    plan = _nested_plan()

    for key in ["nope", "parse/x", "grow/each", "grow[0]/nope", "sign/zz/double",
                "parse@items", "grow@exit", "grow[0]", "sign[1]/double", "double@choice",
                "grow[0]/each[1]/fan/q/double"]:
        with pytest.raises(KeyError):
            plan.locate(key)


@pytest.mark.parametrize("key", ["sign/a", "grow[0]/each[1]/fan/d"])
def test_a_key_ending_at_a_branch_name_raises_key_error(key):
    with pytest.raises(KeyError):
        _nested_plan().locate(key)


def test_predecessors_of_entries_walk_out_to_the_enclosing_decision():
    plan = _nested_plan()

    assert plan.predecessors("parse") == []
    assert plan.predecessors("grow[0]/each@items") == ["parse"]
    assert plan.predecessors("grow[1]/each@items") == ["grow[0]@exit"]
    assert plan.predecessors("grow[0]/each[1]/fan/d/double") == ["grow[0]/each@items"]
    assert plan.predecessors("grow[0]/each[1]/fan/i/inc") == ["grow[0]/each@items"]
    assert plan.predecessors("grow[0]/each[1]/fan/i/inc#2") == ["grow[0]/each[1]/fan/i/inc"]
    assert plan.predecessors("grow[0]/each[1]/double") == ["grow[0]/each[1]/fan"]
    assert plan.predecessors("grow[0]@exit") == ["grow[0]/each"]
    assert plan.predecessors("sign@choice") == ["grow"]
    assert plan.predecessors("sign/a/double") == ["sign@choice"]
    assert plan.predecessors("sign/_default/double") == ["sign@choice"]
    assert plan.predecessors("sign/a/p2/x/inc") == ["sign/a/double"]
    assert plan.predecessors("double") == ["sign"]
    assert plan.predecessors("") == ["double"]


def test_predecessors_of_joins_are_the_ends_of_their_branches():
    plan = _nested_plan()

    assert plan.predecessors("grow[0]/each[1]/fan") == [
        "grow[0]/each[1]/fan/d/double", "grow[0]/each[1]/fan/i/inc#2"]
    assert plan.predecessors("grow[0]/each", {"grow[0]/each@items": [7, 8, 9]}) == [
        "grow[0]/each[0]/double", "grow[0]/each[1]/double", "grow[0]/each[2]/double"]
    assert plan.predecessors("grow[0]/each", {"grow[0]/each@items": []}) == [
        "grow[0]/each@items"]
    assert plan.predecessors("grow[0]/each") == ["grow[0]/each@items"]
    assert plan.predecessors("grow", {"grow@last": 2}) == ["grow[2]@exit"]
    assert plan.predecessors("grow") == []
    assert plan.predecessors("sign", {"sign@choice": "a"}) == ["sign/a/p2"]
    assert plan.predecessors("sign", {"sign@choice": "_default"}) == ["sign/_default/double"]
    assert plan.predecessors("sign") == []


# -- frontier ----------------------------------------------------------------------------
def test_frontier_of_a_fresh_run_stops_at_the_first_decision():
    plan = _nested_plan()

    assert plan.frontier({}, {}) == Chain((
        Call("step", "parse"),
        Call("decide", "grow[0]/each@items"),
        Call("decide", "grow[0]@exit"),
        Call("decide", "sign@choice"),
        Call("step", "double"),
        Call("finish", ""),
    ))


def test_frontier_after_a_partial_map_holds_only_unfinished_items():
    plan = _nested_plan()
    done = "succeeded"
    status = {"parse": done, "grow[0]/each@items": done,
              "grow[0]/each[0]/fan/d/double": done, "grow[0]/each[0]/fan/i/inc": done,
              "grow[0]/each[0]/fan/i/inc#2": done, "grow[0]/each[0]/fan": done,
              "grow[0]/each[0]/double": done, "grow[0]/each[1]/fan/i/inc": done}
    decisions = {"grow[0]/each@items": [1, 2]}

    assert plan.frontier(status, decisions) == Chain((
        Fork((Chain((
            Fork((Chain((Call("step", "grow[0]/each[1]/fan/d/double"),)),
                  Chain((Call("step", "grow[0]/each[1]/fan/i/inc#2"),))),
                 Call("join", "grow[0]/each[1]/fan"), positions=(0, 1)),
            Call("step", "grow[0]/each[1]/double"),
        )),), Call("join", "grow[0]/each"), positions=(1,), chunked=True),
        Call("decide", "grow[0]@exit"),
        Call("decide", "sign@choice"),
        Call("step", "double"),
        Call("finish", ""),
    ))


def test_frontier_follows_the_chosen_branch_and_later_loop_iterations():
    plan = _nested_plan()
    done = "succeeded"
    status = {"parse": done, "grow[0]/each@items": done, "grow[0]/each": done,
              "grow[0]@exit": done, "grow[1]/each@items": done, "grow[1]/each": done,
              "grow[1]@exit": done, "grow": done, "sign@choice": done, "sign/a/double": done}
    decisions = {"grow[0]/each@items": [], "grow[0]@exit": {"exit": False, "next_input": 3},
                 "grow[1]/each@items": [], "grow[1]@exit": {"exit": True, "next_input": None},
                 "sign@choice": "a"}

    assert plan.frontier(status, decisions) == Chain((
        Fork((Chain((Call("step", "sign/a/p2/x/inc"),)),), Call("join", "sign/a/p2"),
             positions=(0,)),
        Call("join", "sign"),
        Call("step", "double"),
        Call("finish", ""),
    ))


def test_frontier_of_an_empty_map_is_its_join_and_a_loop_continues_after_exit_false():
    each = Step.map_over("each", double)
    grow = Step.loop_until("grow", inc, lambda out, ctx: out > 3)
    plan = Plan(each >> grow)
    status = {"each@items": "succeeded", "grow[0]/inc": "succeeded",
              "grow[0]@exit": "succeeded"}
    decisions = {"each@items": [], "grow[0]@exit": {"exit": False, "next_input": 1}}

    assert plan.frontier(status, decisions) == Chain((
        Call("join", "each"),
        Call("step", "grow[1]/inc"),
        Call("decide", "grow[1]@exit"),
        Call("finish", ""),
    ))


def test_frontier_counts_skipped_as_done_and_keeps_max_concurrency():
    fan = Step.parallel("fan", {"a": double, "b": inc, "c": double}, max_concurrency=2)
    plan = Plan(fan)

    frontier = plan.frontier({"fan/a/double": "skipped", "fan/b/inc": "failed"}, {})

    assert frontier == Chain((
        Fork((Chain((Call("step", "fan/b/inc"),)), Chain((Call("step", "fan/c/double"),))),
             Call("join", "fan"), max_concurrency=2, positions=(1, 2)),
        Call("finish", ""),
    ))


def test_a_map_fork_carries_its_chunk_size_for_the_canvas():
    plan = Plan(Step.map_over("each", double, chunk_size=5, max_concurrency=2))

    frontier = plan.frontier({"each@items": "succeeded"}, {"each@items": [1, 2]})

    assert frontier.parts[0] == Fork(
        (Chain((Call("step", "each[0]/double"),)), Chain((Call("step", "each[1]/double"),))),
        Call("join", "each"), max_concurrency=2, positions=(0, 1), chunked=True, chunk_size=5)


def test_frontier_of_a_finished_run_is_only_finish():
    plan = Plan(parse >> double)

    assert plan.frontier({"parse": "succeeded", "double": "succeeded"}, {}) == Chain(
        (Call("finish", ""),))


def test_first_step_and_empty_pipelines():
    from flowops import Pipeline, PipelineDefinitionError

    assert Plan(parse >> double).first_step is parse
    assert Plan(double).first_step is double
    with pytest.raises(PipelineDefinitionError, match="a pipeline needs at least one step"):
        Plan(Pipeline(steps=[]))


def test_after_a_node_comes_the_rest_of_its_scope_then_its_composite():
    plan = _nested_plan()
    done = "succeeded"
    status = {"parse": done, "grow[0]/each@items": done, "grow[0]/each": done}

    # the rest of the scope, from the frontier of what is not done (the canvas cuts it
    # at the first decision)
    assert plan.after("parse", {"parse": done}, {}) == Chain((
        Call("decide", "grow[0]/each@items"), Call("decide", "grow[0]@exit"),
        Call("decide", "sign@choice"), Call("step", "double")))
    # a loop body's end: its exit test; a branch's end: its join; the root's end: finish
    assert plan.after("grow[0]/each", status, {}) == Chain((
        Call("decide", "grow[0]@exit"),))
    assert plan.after("sign/a/p2", {}, {}) == Chain((Call("join", "sign"),))
    assert plan.after("double", {}, {}) == Chain((Call("finish", ""),))
    # the end of a fork's branch: its arrival decides
    assert plan.after("grow[0]/each[3]/double", {}, {}) is None


def test_arrival_names_the_fork_and_branch_place_a_node_ends():
    plan = _nested_plan()

    assert [(ref.key, place) for ref, place in [
        plan.arrival("grow[0]/each[3]/double"), plan.arrival("grow[0]/each[3]/fan/i/inc#2"),
        plan.arrival("sign/a/p2/x/inc")]] == [
        ("grow[0]/each", 3), ("grow[0]/each[3]/fan", 1), ("sign/a/p2", 0)]
    assert plan.arrival("grow[0]/each[3]/fan/i/inc") is None  # not the branch's last
    assert plan.arrival("grow[0]/each@items") is None  # decisions never end a branch
    assert plan.arrival("parse") is None
