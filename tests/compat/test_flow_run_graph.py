"""`GET /flow_runs/{id}/graph-v2`: the UI's run timeline, built from a real
flow with dependent tasks, a nested task and a subflow."""

from __future__ import annotations

import httpx
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact
from prefect.server.models.flow_runs import DependencyResult
from prefect.server.schemas.graph import Graph
from pydantic import TypeAdapter


@task
def source() -> list[int]:
    # Not a small int: Prefect cannot track those as upstream results.
    create_progress_artifact(progress=50.0)
    return [1, 2, 3]


@task
def double(x: list[int]) -> list[int]:
    return [i * 2 for i in x]


@task
def outer() -> list[int]:
    # A task run inside a task run: the inner one is encapsulated by it.
    return double([5])


def test_graph_v2_of_a_real_flow(uid, api_url):
    @flow(name=f"compat-graph-child-{uid}")
    def child() -> int:
        return 3

    @flow(name=f"compat-graph-{uid}")
    def parent() -> int:
        create_markdown_artifact(key=f"graph-{uid}", markdown="# run")
        a = source()
        b = double(a)
        outer()
        return sum(b) + child()

    state = parent(return_state=True)
    run_id = state.state_details.flow_run_id
    with httpx.Client(base_url=api_url) as http:
        response = http.get(f"/flow_runs/{run_id}/graph-v2")
        assert response.status_code == 200, response.text
        body = response.json()
        # The server's own response model reads it.
        graph = Graph.model_validate(body)

        missing = http.get("/flow_runs/00000000-0000-0000-0000-000000000000/graph-v2")
        assert missing.status_code == 404

        late = http.get(f"/flow_runs/{run_id}/graph-v2", params={"since": "2999-01-01T00:00:00Z"})
        assert late.status_code == 200
        assert late.json()["nodes"] == []

        # The v1 graph: every task run with the task runs its inputs came from
        v1 = http.get(f"/flow_runs/{run_id}/graph")
        assert v1.status_code == 200, v1.text
        dependencies = TypeAdapter(list[DependencyResult]).validate_python(v1.json())
        assert http.get("/flow_runs/00000000-0000-0000-0000-000000000000/graph").status_code == 404

    # Task-run labels end in three random hex digits, so two runs of one
    # task can share a label: nodes are listed, never keyed by label.
    nodes = [node for _, node in graph.nodes]
    by_id = {node.id: node for node in nodes}
    assert len(nodes) == 5, sorted(node.label for node in nodes)
    kinds = sorted(node.kind for node in nodes)
    assert kinds == ["flow-run", "task-run", "task-run", "task-run", "task-run"]
    subflow = next(node for node in nodes if node.kind == "flow-run")
    assert subflow.label.startswith(f"compat-graph-child-{uid} / ")

    src = next(node for node in nodes if node.label.startswith("source"))
    doubles = [node for node in nodes if node.label.startswith("double")]
    assert len(doubles) == 2
    dependent = next(node for node in doubles if node.parents)
    nested = next(node for node in doubles if not node.parents)
    out = next(node for node in nodes if node.label.startswith("outer"))
    assert [edge.id for edge in dependent.parents] == [src.id]
    assert [edge.id for edge in src.children] == [dependent.id]
    assert [edge.id for edge in nested.encapsulating] == [out.id]
    assert set(graph.root_node_ids) == {n.id for n in by_id.values() if not n.parents}
    assert dependent.id not in graph.root_node_ids
    assert [s.type.value for s in graph.states][-1] == "COMPLETED"
    assert graph.start_time is not None and graph.end_time is not None
    assert all(node.state_type.value == "COMPLETED" for node in by_id.values())
    by_task_id = {str(d.id): d for d in dependencies}
    assert len(dependencies) == 5, "source, double twice, outer, and the subflow's parent task run"
    assert [str(u.id) for u in by_task_id[str(dependent.id)].upstream_dependencies] == [str(src.id)]
    assert by_task_id[str(src.id)].upstream_dependencies == []
    assert all(d.state.type.value == "COMPLETED" for d in dependencies)
    # Artifacts: the flow run's own at the top, a task run's on its node;
    # only progress artifacts carry their data.
    assert [(a.key, a.type, a.is_latest, a.data) for a in graph.artifacts] == [(f"graph-{uid}", "markdown", True, None)]
    assert [(a.key, a.type, a.is_latest, a.data) for a in src.artifacts] == [(None, "progress", True, 50.0)]
    assert all(not node.artifacts for node in by_id.values() if node.id != src.id)
