"""The ``edgeweave`` command: thin wrappers that parse, call the front doors and print.

Every command that has a result to script against takes ``--json``. Errors a user can
cause print one line and exit with status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edgeweave import cost, models
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import Geometry, LayerGraph, trace

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Plan, simulate and run DNN inference across heterogeneous edge devices.")
# piped output gets wide tables rather than truncated ones
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, soft_wrap=True)

DEMO_MODELS = ("line", "two_branch", "resnet18", "googlenet", "yolov5s")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ModelArgument = Annotated[str, typer.Argument(
    help="A zoo model name (see `edgeweave models`), or your own model as "
         "package.module:factory or path/to/file.py:factory.")]


@contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except EdgeweaveError as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
        raise typer.Exit(1) from None


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _si(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def _window(geometry: Geometry | None) -> str:
    if geometry is None:
        return ""
    def text(values: tuple[int, ...]) -> str:
        return "x".join(map(str, values)) if len(set(values)) > 1 else str(values[0])
    extras = [f"p{text(geometry.padding)}"] if any(geometry.padding) else []
    extras += [f"d{text(geometry.dilation)}"] if max(geometry.dilation) > 1 else []
    extras += [f"g{geometry.groups}"] if geometry.groups > 1 else []
    return " ".join([f"{text(geometry.kernel)}/{text(geometry.stride)}", *extras])


def _table(title: str, columns: tuple[str, ...], right: tuple[str, ...], **kwargs) -> Table:
    table = Table(title=title, **kwargs)
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", no_wrap=True)
    return table


def _shape(shape: tuple[int, ...] | None) -> str:
    return "x".join(map(str, shape)) if shape else "-"


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise EdgeweaveError(f"--input-shape must look like 1,3,224,224; got '{text}'.") from None


def load_graph(spec: str, input_shape: str | None = None, leaves: list[str] | None = None,
               seed: int = 0) -> LayerGraph:
    """Load a model by zoo name or spec and trace it."""
    module, example = models.load(spec, _parse_shape(input_shape), seed)
    return trace(module, example, leaf_modules=leaves or (), name=spec)


@app.command("models")
def models_command(as_json: JsonOption = False) -> None:
    """List the zoo's models."""
    entries = [{"name": e.name, "inputs": [list(s) for s in e.input_shapes],
                "description": e.description} for e in models.ZOO.values()]
    if as_json:
        _echo_json(entries)
        return
    table = _table("edgeweave model zoo", ("model", "input(s)", "description"), ())
    for entry in entries:
        table.add_row(entry["name"], ", ".join(_shape(s) for s in entry["inputs"]),
                      entry["description"])
    console.print(table)


@app.command()
def inspect(
    model: ModelArgument,
    as_json: JsonOption = False,
    input_shape: Annotated[str | None, typer.Option(
        help="Input shape for your own model when its factory gives no example, e.g. "
             "1,3,224,224.")] = None,
    leaf: Annotated[list[str] | None, typer.Option(
        help="A submodule to keep whole (one that torch.fx cannot trace); repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the weights and example input.")] = 0,
) -> None:
    """Trace a model and show its layers with shapes, FLOPs and bytes, and the totals."""
    with _reported():
        graph = load_graph(model, input_shape, leaf, seed)
    if as_json:
        _echo_json(graph.to_dict())
        return
    numbers = ("#", "FLOPs", "params B", "output B")
    table = _table(f"{model}: {len(graph)} layers, {graph.structure.value}",
                   ("#", "layer", "kind", "output", "window", *numbers[1:]), numbers,
                   caption="FLOPs count a multiply-add as 2; window is kernel/stride.")
    for index, layer in enumerate(graph):
        table.add_row(str(index), layer.name, layer.kind.value, _shape(layer.output_shape),
                      _window(layer.geometry), _si(layer.flops), _si(layer.param_bytes),
                      _si(layer.output_bytes))
    table.add_section()
    table.add_row("", "total", "", "", "", _si(graph.flops), _si(graph.param_bytes),
                  _si(graph.activation_bytes))
    console.print(table)
    console.print(f"inputs: {', '.join(graph.inputs)}   outputs: {', '.join(graph.outputs)}   "
                  f"cut points: {len(graph.cut_points)}")


@app.command()
def profile(
    model: ModelArgument,
    output: Annotated[str, typer.Option("--output", "-o", help="Profile file to write (models "
                                        "already in it are kept).")] = "profile.json",
    repeats: Annotated[int, typer.Option(help="Timed runs per layer (median kept).")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed runs per layer first.")] = 2,
    threads: Annotated[int | None, typer.Option(help="torch threads while timing.")] = None,
    input_shape: Annotated[str | None, typer.Option(help="Input shape for your own model.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Time every layer of a model on this host and save a profile the cost model reads."""
    with _reported():
        graph = load_graph(model, input_shape)
        _, example = models.load(model, _parse_shape(input_shape))
        inputs = example if isinstance(example, tuple) else (example,)
        with Progress(console=errors, transient=True) as bar:
            task = bar.add_task(f"profiling {model}", total=len(graph))
            measured = cost.measure(graph, inputs, repeats, warmup, threads,
                                    progress=lambda done, _: bar.update(task, completed=done))
        cost.save([measured], output)
    total = sum(measured.layer_s.values())
    if as_json:
        _echo_json({"model": model, "output": output, "host": measured.host,
                    "threads": measured.threads, "total_s": total,
                    "layer_s": dict(measured.layer_s)})
        return
    console.print(f"{model}: {len(graph)} layers, {total * 1e3:.1f} ms in all on "
                  f"{measured.host} ({measured.threads} threads); written to {output}")


def _summary(name: str, graph: LayerGraph) -> dict[str, Any]:
    return {"model": name, "layers": len(graph), "structure": graph.structure.value,
            "cut_points": len(graph.cut_points), "flops": graph.flops,
            "param_bytes": graph.param_bytes, "activation_bytes": graph.activation_bytes}


@app.command()
def demo(as_json: JsonOption = False) -> None:
    """The main job on this machine: trace a few zoo models and compare them."""
    rows = []
    with _reported(), Progress(console=errors, transient=True) as progress:
        task = progress.add_task("tracing", total=len(DEMO_MODELS))
        for name in DEMO_MODELS:
            progress.update(task, description=f"tracing {name}")
            rows.append(_summary(name, load_graph(name)))
            progress.advance(task)
    if as_json:
        _echo_json(rows)
        return
    numbers = ("layers", "cut points", "FLOPs", "params B", "activations B")
    table = _table("edgeweave demo: traced zoo models", ("model", "structure", *numbers), numbers)
    for row in rows:
        table.add_row(row["model"], row["structure"], str(row["layers"]), str(row["cut_points"]),
                      _si(row["flops"]), _si(row["param_bytes"]), _si(row["activation_bytes"]))
    console.print(table)


def main() -> None:
    """Entry point of the ``edgeweave`` script."""
    app()


if __name__ == "__main__":
    main()
