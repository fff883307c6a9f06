"""The ``edgeweave`` command: thin wrappers that parse, call the front doors and print.

Every command that has a result to script against takes ``--json``. Errors a user can
cause print one line and exit with status 1.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from edgeweave import cost, models
from edgeweave.demo import max_error, on_this_host
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import Geometry, LayerGraph, trace
from edgeweave.planners import PLANNERS
from edgeweave.planners import plan as make_plan
from edgeweave.runtime import IN_FLIGHT, run_stream
from edgeweave.simulation import simulate as simulate_plan
from edgeweave.units import (Plan, Timeline, arrival_times, deadlines_met, footprints,
                             serialize)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Plan, simulate and run DNN inference across heterogeneous edge devices.")
# piped output gets wide tables rather than truncated ones
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, soft_wrap=True)

DEMO_MODEL, DEMO_CLUSTER = "resnet18", "rpi4b*2+edge-server@wifi"
DEMO_HOST_MODEL = "yolov5s"  # the model whose split paid best on two cores (docs/benchmarks.md)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ClusterOption = Annotated[str, typer.Option(
    "--cluster", "-c", help="Cluster expression (rpi4b+edge-server@wifi) or YAML file.")]
PlannerOption = Annotated[str, typer.Option("--planner", "-p", help="A registered planner.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the planner (and of the weights).")]
PlannerOptions = Annotated[list[str] | None, typer.Option(
    "--option", "-O", help="A planner option KEY=VALUE, repeatable (-O n=3 -O reuse=true); "
                           "the value is read as JSON (numbers, true, null), else as text.")]
SourceOption = Annotated[str | None, typer.Option(
    "--source", "--sources", help="The device where the model's inputs arrive (default: the "
                                  "cluster's first), or per model MODEL=DEVICE,MODEL=DEVICE.")]
PeriodOption = Annotated[str | None, typer.Option(
    "--period", help="Seconds between a model's frames (default 0: all at once), for every "
                     "model or per model MODEL=SECONDS,...; recorded in the plan.")]
DeadlineOption = Annotated[str | None, typer.Option(
    "--deadline", help="A model's latency deadline in seconds, for every model or per model "
                       "MODEL=SECONDS,...: planners pay for missing it; reports say how "
                       "often it is met.")]
WeightOption = Annotated[str | None, typer.Option(
    "--weight", help="A model's weight in the objective (largest weighted latency), for "
                     "every model or per model MODEL=WEIGHT,...")]
FramesOption = Annotated[int, typer.Option(help="Frames to send through the plan.")]
IntervalOption = Annotated[float | None, typer.Option(
    help="Seconds between frame arrivals, for every model (default: each model's period, "
         "as planned).")]
GanttOption = Annotated[str | None, typer.Option(help="Write a Gantt chart (PNG) here.")]
BackendOption = Annotated[str, typer.Option(
    help="inline (one process), local (one process per device) or ray (one actor per "
         "device, across machines).")]
AddressOption = Annotated[str | None, typer.Option(
    help="ray: the head HEAD:PORT of a Ray cluster whose nodes joined with `edgeweave "
         "worker` (default: a Ray instance started here for the run).")]
TrustOption = Annotated[bool, typer.Option(
    "--trust", help="Load models a saved plan names by module or file (runs that code).")]
InputShapeOption = Annotated[str | None, typer.Option(
    help="Input shape for your own model when its factory gives no example, e.g. "
         "1,3,224,224 (every model given).")]
LeafOption = Annotated[list[str] | None, typer.Option(
    help="A submodule to keep whole (one that torch.fx cannot trace); repeatable.")]
ModelArgument = Annotated[str, typer.Argument(
    help="A zoo model name (see `edgeweave models`), or your own model as "
         "package.module:factory or path/to/file.py:factory; several joined by commas "
         "are planned together (alexnet,googlenet,resnet50).")]


@contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except EdgeweaveError as error:
        errors.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, markup=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:  # Ctrl-C: the run has stopped its workers on the way out
        errors.print("[bold red]interrupted[/]", highlight=False, markup=True)
        raise typer.Exit(130) from None
    except OSError as error:  # an output under a file, a folder not writable, …
        if error.filename is None:
            raise
        why = ("it is a file, not a folder"
               if isinstance(error, FileExistsError | NotADirectoryError)
               else error.strerror or str(error))
        errors.print(f"[bold red]error:[/] cannot write or read '{escape(str(error.filename))}'"
                     f": {escape(why)}.", highlight=False, markup=True)
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
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise EdgeweaveError(f"--input-shape must look like 1,3,224,224 (sizes of at least "
                             f"1); got '{text}'.")
    return shape


def load(spec: str, input_shape: str | None = None, leaves: list[str] | None = None,
         seed: int = 0) -> tuple[Any, tuple[Any, ...], LayerGraph]:
    """A model by zoo name or spec, once: the module, its example inputs, its traced graph."""
    module, example = models.load(spec, _parse_shape(input_shape), seed)
    inputs = _arguments(example)
    return module, inputs, trace(module, inputs, leaf_modules=leaves or (), name=spec)


@dataclass(frozen=True)
class Loaded:
    """One model of a workload, by the name the plan gives it."""

    name: str
    spec: str
    module: Any
    inputs: tuple[Any, ...] | dict[str, Any]  # forward arguments, or by name
    graph: LayerGraph


def load_workload(specs: str, seed: int = 0, input_shape: str | None = None,
                  leaves: list[str] | None = None) -> list[Loaded]:
    """The models of ``specs`` (comma-separated), each traced once (``input_shape`` and
    ``leaves`` as ``load`` takes them); a spec given twice gets its copies named
    ``spec#1``, ``spec#2``…"""
    names = [spec.strip() for spec in specs.split(",") if spec.strip()]
    if not names:
        raise EdgeweaveError("No model given.")
    loaded = []
    for index, spec in enumerate(names):
        name = spec if names.count(spec) == 1 else f"{spec}#{names[:index].count(spec) + 1}"
        module, inputs, graph = load(spec, input_shape, leaves, seed)
        loaded.append(Loaded(name, spec, module, inputs,
                             graph if name == spec else dataclasses.replace(graph, name=name)))
    return loaded


def _saved(path: str, trust: bool, seed: int) -> tuple[Plan, list[Loaded]]:
    """A saved plan and its models (their modules and example inputs), by the plan's specs."""
    made = serialize.load(path, trust_specs=trust)
    workload = []
    for name, graph in made.graphs.items():
        spec = made.models.get(name)
        if spec is None:
            raise EdgeweaveError(f"The plan's model '{name}' names no spec to load it by: run "
                                 "it from Python, with its inputs.")
        shape = graph[graph.inputs[0]].output_shape if graph.inputs else None
        module, example = models.load(spec, shape, seed)
        inputs = _arguments(example)
        workload.append(Loaded(name, spec, module, inputs, graph))
    return made, workload


def streams_of(workload: list[Loaded], source: str | None = None, period: str | None = None,
               deadline: str | None = None, weight: str | None = None
               ) -> dict[str, dict[str, Any]]:
    """The workload's streams from ``--source``, ``--period``, ``--deadline`` and
    ``--weight`` (each one value for every model, or MODEL=VALUE pairs)."""
    streams: dict[str, dict[str, Any]] = {}
    for flag, key, text, kind in (("--source", "source", source, str),
                                  ("--period", "period_s", period, float),
                                  ("--deadline", "deadline_s", deadline, float),
                                  ("--weight", "weight", weight, float)):
        for model, value in _per_model(flag, text, workload).items():
            try:
                streams.setdefault(model, {})[key] = kind(value)
            except ValueError:
                raise EdgeweaveError(f"{flag} wants a number for model '{model}'; got "
                                     f"'{value}'.") from None
    return streams


def _per_model(flag: str, text: str | None, workload: list[Loaded]) -> dict[str, str]:
    """One value for every model, or MODEL=VALUE pairs."""
    if not text:
        return {}
    if "=" not in text:
        return {m.name: text for m in workload}
    pairs = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    unknown = sorted(set(pairs) - {m.name for m in workload})
    if unknown:
        raise EdgeweaveError(f"{flag} names model(s) {unknown}, which are not planned "
                             f"(models: {', '.join(m.name for m in workload)}).")
    return pairs


def _inputs(workload: list[Loaded]):
    """The example inputs: a model's own, or a dict by model for several."""
    if len(workload) == 1:
        return workload[0].inputs
    return {m.name: m.inputs for m in workload}


KEEP_EVENTS = 100  # frames of a stream of images whose events the timeline keeps


@dataclass
class _Feed:
    """What `run` sends: the example inputs ``count`` times, or the images in ``files``."""

    workload: list[Loaded]
    count: int
    files: list[Any] | None = None
    shape: tuple[int, ...] = ()

    def inputs(self) -> Iterator[Any]:
        """Each frame's inputs, read as the run draws them."""
        if self.files is None:
            example = _inputs(self.workload)
            return (example for _ in range(self.count))
        from edgeweave.runtime.images import image_frames

        return image_frames(self.files, self.shape)

    def take(self, outputs, check: bool, folder: str | None, advance) -> float | None:
        """Take each frame's outputs as they come: compare them with the model's
        (``check``; the largest difference is returned), write them to ``folder``."""
        from pathlib import Path

        import torch

        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        frames = self.inputs() if check else None  # read again: never held all at once
        workload, error = self.workload, None
        for frame, output in enumerate(outputs):
            if frames is not None:
                given = next(frames)
                given = {workload[0].name: given} if len(workload) == 1 else given
                worst = max(max_error(m.module, _arguments(given[m.name]),
                                      output if len(workload) == 1 else output[m.name])
                            for m in workload)
                error = worst if error is None else max(error, worst)
            if folder:
                name = self.files[frame].stem if self.files else f"frame-{frame:06d}"
                torch.save(output, Path(folder) / f"{name}.pt")
            advance()
        return error


def _arguments(inputs: Any) -> tuple[Any, ...] | dict[str, Any]:
    """A model's example as ``trace`` takes it: a tuple of arguments, or a dict by name."""
    return inputs if isinstance(inputs, tuple | dict) else (inputs,)


def _frames(workload: list[Loaded], frames: int | None, images: str | None) -> _Feed:
    """What `run` sends: ``frames`` times the example inputs, or a folder of images."""
    if images is None:
        count = 1 if frames is None else frames
        if count < 1:
            raise EdgeweaveError(f"--frames must be >= 1; got {count}.")
        return _Feed(workload, count)
    from edgeweave.runtime.images import image_files, image_shape

    if frames is not None:
        raise EdgeweaveError("Give --frames or --images, not both: every image is a frame.")
    if len(workload) != 1:
        raise EdgeweaveError("--images feeds one model; the workload has "
                             f"{len(workload)} ({', '.join(m.name for m in workload)}).")
    model = workload[0]
    shape = image_shape([tuple(x.shape) for x in model.graph.bind_inputs(model.inputs)],
                        model.name)
    files = image_files(images)
    return _Feed(workload, len(files), files, shape)


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
    input_shape: InputShapeOption = None, leaf: LeafOption = None,
    seed: Annotated[int, typer.Option(help="Seed of the weights and example input.")] = 0,
) -> None:
    """Trace a model and show its layers with shapes, FLOPs and bytes, and the totals."""
    with _reported():
        _, _, graph = load(model, input_shape, leaf, seed)
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
                                        "already in it are kept); with --cluster, a directory "
                                        "for one file per device and cluster.yaml.")] = "profile.json",
    cluster: Annotated[str | None, typer.Option(
        "--cluster", "-c", help="Time the layers on every device of this cluster, through "
                                "the devices' workers.")] = None,
    backend: Annotated[str, typer.Option(help="With --cluster: local (a process per device, "
                                         "one after another) or ray (on the devices).")] = "local",
    address: AddressOption = None,
    repeats: Annotated[int, typer.Option(help="Timed runs per layer (median kept).")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed runs per layer first.")] = 2,
    threads: Annotated[int | None, typer.Option(help="torch threads while timing.")] = None,
    input_shape: Annotated[str | None, typer.Option(help="Input shape for your own model.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Time every layer of a model — on this host, or on every device of a cluster — and
    save profiles the cost model reads."""
    with _reported():
        _, inputs, graph = load(model, input_shape)
        if cluster is not None:
            _profile_cluster(model, graph, inputs, cluster, backend, address, output, repeats,
                             warmup, as_json)
            return
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


def _profile_cluster(model, graph, inputs, cluster_spec, backend, address, output, repeats,
                     warmup, as_json) -> None:
    from pathlib import Path

    from edgeweave.cluster import Cluster
    from edgeweave.cluster import config as cluster_config
    from edgeweave.runtime.profiling import cluster_with_profiles, profile_devices

    loaded = Cluster.load(cluster_spec)
    directory = Path(output if output != "profile.json" else "profiles")
    with Progress(console=errors, transient=True) as bar:
        task = bar.add_task(f"profiling {model} on {len(loaded.devices)} devices",
                            total=len(loaded.devices))
        profiles = profile_devices(graph, inputs, loaded, backend, repeats, warmup, address,
                                   progress=lambda _: bar.advance(task))
    profiled = cluster_with_profiles(loaded, profiles, directory)
    cluster_config.save(profiled, directory / "cluster.yaml")
    totals = {d: sum(p.layer_s.values()) for d, p in profiles.items()}
    if as_json:
        _echo_json({"model": model, "cluster": str(directory / "cluster.yaml"),
                    "devices": {d: {"host": p.host, "threads": p.threads, "total_s": totals[d]}
                                for d, p in profiles.items()}})
        return
    table = _table(f"{model}: every layer timed on each device's worker ({backend})",
                   ("device", "threads", "total ms", "measured on"), ("threads", "total ms"))
    for device, measured in profiles.items():
        table.add_row(device, str(measured.threads), f"{totals[device] * 1e3:.1f}",
                      measured.host)
    console.print(table)
    console.print(f"profiles in {directory}/; plan with them: --cluster {directory}/cluster.yaml")


@app.command("calibrate")
def calibrate_command(
    model: ModelArgument, cluster: ClusterOption,
    backend: Annotated[str, typer.Option(help="The backend to calibrate for: local or ray.")]
    = "local",
    output: Annotated[str, typer.Option("--output", "-o", help="The calibrated cluster file "
                                        "to write (profiles beside it).")] = "calibrated.yaml",
    emulate: Annotated[bool, typer.Option(help="local: runs will emulate the cluster's links "
                                          "(keep their costs on top of the backend's).")]
    = False,
    address: AddressOption = None,
    repeats: Annotated[int, typer.Option(help="Timed passes per device.")] = 3,
    as_json: JsonOption = False,
) -> None:
    """Measure a model's layers, and the backend's cost per segment and per byte, through
    each device's worker; write a cluster whose cost model predicts that backend."""
    from pathlib import Path

    from edgeweave.cluster import Cluster
    from edgeweave.cluster import config as cluster_config
    from edgeweave.runtime.calibrate import calibrate

    with _reported():
        _, inputs, graph = load(model)
        loaded = Cluster.load(cluster)
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        with Progress(console=errors, transient=True) as bar:
            task = bar.add_task(f"calibrating {model} on {len(loaded.devices)} devices",
                                total=len(loaded.devices) + 2)  # then bands, hops
            calibrated = calibrate(graph, inputs, loaded, backend, emulate, repeats,
                                   path.with_name(path.stem + "-profiles"), address,
                                   progress=lambda _: bar.advance(task))
        cluster_config.save(calibrated, path)
    if as_json:
        _echo_json({"model": model, "cluster": str(path), **calibrated.to_dict()})
        return
    table = _table(f"{model}: {calibrated.name}", ("device", "segment overhead ms", "profile"),
                   ("segment overhead ms",))
    for device in calibrated.devices:
        table.add_row(device.name, f"{device.segment_overhead_s * 1e3:.3f}", device.profile)
    console.print(table)
    link = calibrated.links[0]
    console.print(f"links: {link.latency_s * 1e3:.3f} ms + {8e6 / link.bandwidth_bps:.3g} ms "
                  f"per kB (first link); plan with it: --cluster {path}", highlight=False)


def _plan(workload: list[Loaded], cluster: str, planner: str, seed: int,
          options: list[str] | None = None, streams: dict[str, dict[str, Any]] | None = None
          ) -> tuple[Plan, float]:
    start = time.perf_counter()
    made = make_plan([m.graph for m in workload], cluster, planner=planner, seed=seed,
                     models={m.name: m.spec for m in workload}, workload=streams,
                     **_planner_options(options or []))
    return made, time.perf_counter() - start


def _planner_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as planner options, each value JSON where it parses, else text."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EdgeweaveError(f"A planner option is KEY=VALUE (for example n=3); got "
                                 f"'{pair}'.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _timeline_row(timeline: Timeline) -> dict[str, Any]:
    per_model = timeline.model_latency_s()
    rate = timeline.model_throughput_fps()
    return {"latency_ms": 1e3 * sum(timeline.latency_s) / len(timeline.latency_s),
            "throughput_fps": timeline.throughput_fps,
            "bytes_moved": sum(timeline.bytes_moved().values()),
            "models": {m: {"latency_ms": [1e3 * s for s in seconds],
                           "throughput_fps": rate[m]} for m, seconds in per_model.items()}}


def _models_table(made: Plan, timelines: list[tuple[str, Timeline]]) -> Table:
    """Per model of a workload: its source, each timeline's mean latency and throughput,
    and how often its deadline was met."""
    columns = [f"{label} {what}" for label, _ in timelines for what in ("ms", "frames/s")]
    table = _table("per model", ("model", "source", *columns, "deadline met"), tuple(columns))
    latency = [timeline.model_latency_s() for _, timeline in timelines]
    rate = [timeline.model_throughput_fps() for _, timeline in timelines]
    met = deadlines_met(latency[-1], made.streams)
    for model, stream in made.streams.items():
        cells = []
        for seconds, fps in zip(latency, rate):
            cells += [f"{1e3 * sum(seconds[model]) / len(seconds[model]):.1f}",
                      f"{fps[model]:.2f}"]
        table.add_row(model, stream.source, *cells,
                      f"{met[model]:.0%}" if model in met else "")
    return table


def _plan_table(made: Plan, timeline: Timeline) -> Table:
    busy, prints = timeline.busy_s(), footprints(made)
    table = _table(f"{made.planner} on {made.cluster.name}: {len(made.units)} units",
                   ("device", "units", "busy ms", "weights B", "peak activations B"),
                   ("units", "busy ms", "weights B", "peak activations B"))
    for device, ids in made.order.items():
        table.add_row(device, str(len(ids)), f"{busy.get(device, 0.0) * 1e3:.1f}",
                      _si(prints[device].weight_bytes), _si(prints[device].peak_activation_bytes))
    return table


@app.command("plan")
def plan_command(
    model: ModelArgument, cluster: ClusterOption, planner: PlannerOption = "neurosurgeon",
    seed: SeedOption = 0, option: PlannerOptions = None, source: SourceOption = None,
    period: PeriodOption = None, deadline: DeadlineOption = None, weight: WeightOption = None,
    input_shape: InputShapeOption = None, leaf: LeafOption = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Save the plan (JSON).")] = None,
    partition_map: Annotated[str | None, typer.Option(
        "--map", help="Draw the partition map (PNG): which device computes which part of "
                      "each layer.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Plan a model (or several at once) on a cluster; show where the units go and the
    predicted latency."""
    with _reported():
        workload = load_workload(model, seed, input_shape, leaf)
        made, planning_s = _plan(workload, cluster, planner, seed, option,
                                 streams_of(workload, source, period, deadline, weight))
        timeline = simulate_plan(made)
        if output:
            serialize.save(made, output)
        if partition_map:
            from edgeweave.report import partition_map as draw_map

            draw_map(made, partition_map)
    if as_json:
        _echo_json({"planner": planner, "planning_s": planning_s, "output": output,
                    **_timeline_row(timeline), "order": {d: list(i) for d, i in made.order.items()},
                    "notes": dict(made.notes)})
        return
    console.print(_plan_table(made, timeline))
    if len(made.graphs) > 1:
        console.print(_models_table(made, [("predicted", timeline)]))
    if "summary" in made.notes:
        console.print(f"{made.planner}: {made.notes['summary']}", highlight=False)
    if "kept_whole" in made.notes:
        console.print(f"kept whole (the region kernels cannot split them): "
                      f"{made.notes['kept_whole']}", highlight=False, markup=False)
    console.print(f"predicted latency {timeline.latency_s[0] * 1e3:.1f} ms, planned in "
                  f"{planning_s * 1e3:.0f} ms" + (f"; saved to {output}" if output else "")
                  + (f"; partition map in {partition_map}" if partition_map else ""))


@app.command()
def simulate(
    plan_file: Annotated[str, typer.Argument(help="A plan saved by `edgeweave plan -o`.")],
    frames: FramesOption = 1, interval: IntervalOption = None, gantt: GanttOption = None,
    trust: TrustOption = False,
    as_json: JsonOption = False,
) -> None:
    """Simulate a saved plan: latency per frame, throughput, busy time, bytes moved."""
    with _reported():
        made = serialize.load(plan_file, trust_specs=trust)
        timeline = simulate_plan(made, frames, interval)
        if gantt:
            from edgeweave.report import gantt as draw

            draw([(made.planner, timeline)], gantt, {u.id: u.graph for u in made.units})
    if as_json:
        _echo_json({**timeline.metrics(made.streams),
                    "events": [repr(e) for e in timeline.events]})
        return
    console.print(_plan_table(made, timeline))
    if len(made.graphs) > 1:
        console.print(_models_table(made, [("predicted", timeline)]))
    console.print(f"{frames} frame(s): mean latency {_timeline_row(timeline)['latency_ms']:.1f} "
                  f"ms, throughput {timeline.throughput_fps:.2f} frames/s"
                  + (f"; Gantt charts (the cluster, then this host predicted and measured) "
                     f"in {gantt}" if gantt else ""))


def compare_planners(workload: list[Loaded], cluster: str, planners: list[str],
                     seed: int = 0, progress: Progress | None = None,
                     streams: dict[str, dict[str, Any]] | None = None
                     ) -> tuple[list[dict[str, Any]], dict[str, Plan]]:
    """Plan and simulate a workload (its ``streams``, as ``streams_of`` gives them) with
    each planner: one row of figures per planner, and the plans by planner."""
    rows, plans = [], {}
    task = progress.add_task("planning", total=len(planners)) if progress else None
    for name in planners:
        if progress:
            progress.update(task, description=f"planning with {name}")
        plans[name], planning_s = _plan(workload, cluster, name, seed, streams=streams)
        rows.append({"planner": name, **_timeline_row(simulate_plan(plans[name])),
                     "planning_ms": planning_s * 1e3, "units": len(plans[name].units)})
        if progress:
            progress.advance(task)
    return rows, plans


def _compare_table(title: str, rows: list[dict[str, Any]]) -> Table:
    numbers = ("latency ms", "bytes moved", "planning ms", "units")
    table = _table(title, ("planner", *numbers), numbers, caption="predicted by the simulator")
    for row in rows:
        table.add_row(row["planner"], f"{row['latency_ms']:.1f}", _si(row["bytes_moved"]),
                      f"{row['planning_ms']:.1f}", str(row["units"]))
    return table


@app.command()
def compare(
    model: ModelArgument, cluster: ClusterOption,
    planners: Annotated[str | None, typer.Option(help="Comma-separated planners (default: all).")]
    = None,
    seed: SeedOption = 0, source: SourceOption = None, period: PeriodOption = None,
    deadline: DeadlineOption = None, weight: WeightOption = None,
    input_shape: InputShapeOption = None, leaf: LeafOption = None, as_json: JsonOption = False,
) -> None:
    """Every registered planner on one model (or several at once) and cluster: predicted
    latency, bytes, planning time."""
    names = planners.split(",") if planners else list(PLANNERS)
    with _reported(), Progress(console=errors, transient=True) as progress:
        workload = load_workload(model, seed, input_shape, leaf)
        rows, _ = compare_planners(workload, cluster, names, seed, progress,
                                   streams_of(workload, source, period, deadline, weight))
    if as_json:
        _echo_json(rows)
        return
    console.print(_compare_table(f"{model} on {cluster}", rows))


@app.command()
def run(
    model: Annotated[str, typer.Argument(
        help="What `plan` takes (zoo names or your models, comma-separated), or a plan saved "
             "by `edgeweave plan -o` (a .json file: no --cluster or --planner then).")],
    cluster: Annotated[str | None, typer.Option(
        "--cluster", "-c", help="Cluster expression (rpi4b+edge-server@wifi) or YAML file.")]
    = None,
    planner: PlannerOption = "neurosurgeon",
    backend: BackendOption = "local",
    frames: Annotated[int | None, typer.Option(
        help="Frames to send through the plan, each the model's example input (default 1).")]
    = None,
    images: Annotated[str | None, typer.Option(
        help="A folder of images: each (in name order) is a frame, resized to the model's "
             "input (1, C, H, W), values in [0, 1]; streamed, a few in the workers at a "
             "time.")] = None,
    outputs: Annotated[str | None, typer.Option(
        help="Write each frame's outputs to this folder (torch.save): one file per image, "
             "named after it, or per frame.")] = None,
    interval: IntervalOption = None,
    emulate: Annotated[bool, typer.Option(help="local backend: emulate the cluster's links "
                                          "and its devices' predicted compute times; ray: "
                                          "the compute times.")] = False,
    check: Annotated[bool, typer.Option(help="Compare outputs with the original model.")] = False,
    address: AddressOption = None,
    ray_mode: Annotated[str, typer.Option(help="ray: compiled (a Ray Compiled Graph), plain "
                                          "(actor calls), messages (actors message each "
                                          "other; steals) or auto (messages for a plan "
                                          "with stealable units, else compiled).")] = "auto",
    detect: Annotated[float, typer.Option(help="local: seconds of silence after which a "
                                          "worker counts as dead and is re-planned.")] = 3.0,
    timeout: Annotated[float, typer.Option(help="Seconds without progress before the run "
                                           "stops.")] = 60.0,
    trace_file: Annotated[str | None, typer.Option(
        "--trace", help="Write predicted and measured timelines as a Chrome trace (JSON).")] = None,
    gantt: GanttOption = None, seed: SeedOption = 0, option: PlannerOptions = None,
    source: SourceOption = None, period: PeriodOption = None, deadline: DeadlineOption = None,
    weight: WeightOption = None, input_shape: InputShapeOption = None, leaf: LeafOption = None,
    trust: TrustOption = False, as_json: JsonOption = False,
) -> None:
    """Plan a model (or several at once) and really execute the plan, or execute a saved
    plan, on its example inputs or a folder of images; --check compares every frame's
    outputs with the models themselves."""
    with _reported():
        if model.endswith(".json"):
            if cluster is not None:
                raise EdgeweaveError("A saved plan brings its own cluster: drop --cluster "
                                     "(or plan again with `edgeweave plan`).")
            made, workload = _saved(model, trust, seed)
            planner = made.planner
        else:
            if cluster is None:
                raise EdgeweaveError("--cluster is needed to plan the model(s); or give a plan "
                                     "saved by `edgeweave plan -o`.")
            workload = load_workload(model, seed, input_shape, leaf)
            made, _ = _plan(workload, cluster, planner, seed, option,
                            streams_of(workload, source, period, deadline, weight))
        feed = _frames(workload, frames, images)
        arrival_times(made.streams, feed.count, interval)  # too few arrival times: named now
        options = {"local": {"detect_s": detect, "emulate_links": emulate,
                             "emulate_compute": emulate},
                   "ray": {"detect_s": detect, "address": address, "mode": ray_mode,
                           "emulate_compute": emulate}}
        with Progress(console=errors, transient=True) as bar, run_stream(
                made, feed.inputs(), backend, interval, timeout,
                in_flight=None if images is None else IN_FLIGHT,
                keep_events=None if images is None else KEEP_EVENTS,
                **options.get(backend, {})) as result:
            task = bar.add_task(f"running {feed.count} frame(s) on the {backend} backend",
                                total=feed.count)
            error = feed.take(result, check, outputs, lambda: bar.advance(task))
        simulated = feed.count if images is None else min(feed.count, KEEP_EVENTS)
        predicted = simulate_plan(made, simulated, interval)
        measured = result.timeline
        pictures = [(f"{model}, {planner}: predicted", predicted)] + (
            [(f"{model}, {planner}: measured", measured)] if measured else [])
        if gantt:
            from edgeweave.report import gantt as draw

            draw(pictures, gantt)
        if trace_file:
            from edgeweave.report import chrome_trace

            chrome_trace(pictures, trace_file)
    frames = feed.count
    figures = {"planner": planner, "backend": backend, "frames": frames,
               "predicted": _timeline_row(predicted), "max_abs_error": error,
               "measured": _timeline_row(measured) if measured else None,
               "measured_by": measured.source if measured else None,
               "faults": list(result.faults), "gantt": gantt, "trace": trace_file,
               "outputs": outputs}
    if as_json:
        _echo_json(figures)
    else:
        kept = "" if simulated == frames else f" (predicted, bytes: the first {simulated})"
        table = _table(f"{model} with {planner} on {made.cluster.name}, {frames} frame(s)"
                       + kept,
                       ("", "mean latency ms", "throughput frames/s", "bytes moved"),
                       ("mean latency ms", "throughput frames/s", "bytes moved"))
        for label, timeline in (("predicted (simulated)", predicted),
                                (f"measured ({measured.source[10:]})" if measured else "", measured)):
            if timeline is not None:
                row = _timeline_row(timeline)
                table.add_row(label, f"{row['latency_ms']:.1f}", f"{row['throughput_fps']:.2f}",
                              _si(row["bytes_moved"]))
        console.print(table)
        if len(made.graphs) > 1:
            console.print(_models_table(made, [("predicted", predicted)] + (
                [("measured", measured)] if measured else [])))
        if measured is None:
            console.print("inline backend: outputs computed in one process, nothing measured")
        elif images is not None:
            console.print(f"measured latency counts from when an image went in (at most "
                          f"{IN_FLIGHT} in the workers at once); predicted, from its arrival")
        for fault in result.faults:
            console.print(f"[yellow]survived:[/] {fault}")
        if check:
            console.print(f"outputs equal the model's: max |difference| = {error:.2e}")
        for what, path in (("Gantt chart (predicted above measured)", gantt),
                           ("Chrome trace", trace_file)):
            if path:
                console.print(f"{what} in {path}")
        if outputs:
            console.print(f"outputs of {frames} frame(s) in {outputs}")
    if check and error > 1e-4:
        raise typer.Exit(2)


@app.command()
def worker(
    device: Annotated[str, typer.Option(help="The device this machine is, as named in the "
                                        "cluster file.")],
    address: Annotated[str, typer.Option(help="The Ray head, HEAD:PORT (`ray start --head` "
                                         "prints it).")],
    token_file: Annotated[str | None, typer.Option(
        help="The head's token file (its ~/.ray/auth_token); default: $RAY_AUTH_TOKEN or "
             "this machine's ~/.ray/auth_token.")] = None,
    cpus: Annotated[int | None, typer.Option(help="CPUs this node offers Ray.")] = None,
) -> None:
    """Join this machine to a Ray cluster as DEVICE (wraps `ray start`, token auth on)."""
    import os

    from edgeweave.runtime.ray_cluster import worker_command

    with _reported():
        command, environment = worker_command(device, address, token_file, cpus)
    errors.print(f"joining {address} as device '{device}': {' '.join(command[1:])}",
                 highlight=False)
    os.execve(command[0], command, environment)


@app.command()
def reproduce(
    name: Annotated[str, typer.Argument(
        help="The experiment: jin2022 (seed 000), wang2021 (seed 001), edgeflow (seed 002) "
             "or deepthings (seed 003).")],
    out: Annotated[str | None, typer.Option(
        help="Write the reproduction page here (default: docs/reproductions/NAME.md).")]
    = None,
    as_json: JsonOption = False,
) -> None:
    """Reproduce a seed paper's experiment side by side with its published numbers."""
    from pathlib import Path

    from edgeweave import experiments

    with _reported():
        function = experiments.get(name)
        with Progress(console=errors, transient=True) as progress:
            task = progress.add_task(name, total=None)
            result = function(lambda step: progress.update(task, description=step))
        path = Path(out or f"docs/reproductions/{name}.md")
        path.parent.mkdir(parents=True, exist_ok=True)
        result.write(path)
    if as_json:
        _echo_json({"experiment": name, "written": str(path), "rows": result.to_dict()})
        return
    columns, rows = result.table()
    table = _table(result.title, tuple(columns), tuple(columns[2:]),
                   caption="predicted by the simulator; plans checked against the model's "
                           "output")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"written to {path}")


HostModelOption = Annotated[str, typer.Option(
    "--host-model", help="The model the demo really runs on this host's cores.")]


@app.command()
def demo(gantt: GanttOption = "demo-gantt.png", host_model: HostModelOption = DEMO_HOST_MODEL,
         as_json: JsonOption = False) -> None:
    """The main job: plan resnet18 on a preset cluster with every planner and simulate it;
    then, on this host's cores, calibrate, rank the planners and really run the first
    against plain PyTorch."""
    with _reported(), Progress(console=errors, transient=True) as progress:
        rows, plans = compare_planners(load_workload(DEMO_MODEL), DEMO_CLUSTER, list(PLANNERS),
                                       0, progress)
        best = min(rows, key=lambda row: row["latency_ms"])["planner"]
        timeline = simulate_plan(plans[best], frames=4, interval_s=0.1)
        task = progress.add_task("on this host", total=None)
        host_module, host_inputs, host_graph = load(host_model)
        host = on_this_host(host_module, host_inputs, host_graph,
                            step=lambda what: progress.update(task, description=what))
        if gantt:
            from edgeweave.report import gantt as draw

            here = f"{host_model}, {host.planner}, {host.workers} workers on this host"
            draw([(f"{DEMO_MODEL}, {best}, on {DEMO_CLUSTER}", timeline),
                  (f"{here}: predicted", host.simulated), (f"{here}: measured", host.measured)],
                 gantt)
    if as_json:
        _echo_json({"comparison": rows, "best": best, "gantt": gantt,
                    "predicted": _timeline_row(timeline),
                    "host": {"model": host_model, **host.summary()}})
        return
    console.print(_compare_table(f"{DEMO_MODEL} on {DEMO_CLUSTER}", rows))
    console.print(f"best: {best}; 4 frames every 100 ms, simulated on the cluster: mean "
                  f"latency {_timeline_row(timeline)['latency_ms']:.1f} ms, "
                  f"{timeline.throughput_fps:.2f} frames/s"
                  + (f"; Gantt charts (the cluster, then this host predicted and measured) "
                     f"in {gantt}" if gantt else ""))
    table = _table(f"{host_model} really run on this host: {host.workers} worker process(es) "
                   "of one thread, calibrated", ("plan", "predicted ms", "measured ms",
                                                 "plain module(x) ms", "speed-up"),
                   ("predicted ms", "measured ms", "plain module(x) ms", "speed-up"),
                   caption="plain module(x): one torch thread, timed before and after")
    table.add_row(host.planner, f"{host.predicted_ms:.1f}", f"{host.measured_ms:.1f}",
                  f"{host.plain_ms:.1f}", f"{host.speedup:.2f}x")
    console.print(table)
    console.print(f"ranked first of {len(host.ranking)} planners on the calibrated workers; "
                  f"outputs equal the model's, max |difference| = {host.max_abs_error:.2e}",
                  highlight=False)


def main() -> None:
    """Entry point of the ``edgeweave`` script."""
    app()


if __name__ == "__main__":
    main()
