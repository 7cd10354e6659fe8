"""The `a2qflow` command line: each command parses its options into a config dataclass and
calls one library function; defaults come from those dataclasses, choices from the
registries (networks, datasets, recipes, boards). Every known error becomes one line and
exit code 1, a usage error exit code 2, Ctrl-C or SIGTERM exit code 130; `--debug` shows
tracebacks."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from a2qflow.build_flows.config import FLOWS, SIZING_MODES, BuildConfig
from a2qflow.errors import A2qflowError, sigterm_as_interrupt
from a2qflow.hw_configs import DEFAULT_BOARD, board_names, get_board
from a2qflow.models import catalog as C
from a2qflow.models.catalog import DATASET_NAMES, NETWORK_NAMES, RECIPE_NAMES

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _known_errors() -> tuple[type, ...]:
    import yaml

    from a2qflow.deploy.errors import DeployError

    return (A2qflowError, DeployError, OSError, ValueError, yaml.YAMLError)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class A2qflowGroup(click.Group):
    """The error boundary: a command's known errors become one line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: what was running says so in its status; rerun to resume "
                              "or start clean")
            ctx.exit(130)
        except Exception as err:  # noqa: BLE001 - the boundary: every error ends here
            if (ctx.obj or {}).get("debug"):
                raise
            if isinstance(err, _known_errors()):
                err_console.print(f"[red]error:[/] {_one_line(err)}", markup=True, highlight=False)
            else:
                err_console.print(f"[red]error:[/] unexpected {type(err).__name__}: {_one_line(err)} (rerun with "
                                  "--debug for the traceback)", highlight=False)
            ctx.exit(1)


class BoardType(click.ParamType):
    """FINN's board names from hw_configs, matched case-insensitively (`pynq-z2`)."""
    name = "board"

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(board_names()) + "]"

    def convert(self, value, param, ctx):
        from a2qflow.hw_configs import UnknownBoardError

        try:
            return get_board(value).name
        except UnknownBoardError as err:
            self.fail(str(err), param, ctx)


BOARD = BoardType()


def _board(value: str) -> str:
    return get_board(value).name


def _layer_bits(items: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, bits = item.partition("=")
        if not sep or not bits.isdigit():
            raise click.BadParameter(f"{item!r}: expected LAYER=BITS, e.g. fc.0=16", param_hint="--layer-acc-bits")
        out[name] = int(bits)
    return out


def _table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for key in rows[0] if rows else []:
        table.add_column(key, overflow="fold")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    return table


@click.group(cls=A2qflowGroup)
@click.version_option(package_name="a2qflow")
@click.option("--debug", is_flag=True, help="show tracebacks instead of one-line errors")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """a2qflow: train with A2Q/A2Q+, export to QONNX with a certified accumulator width P,
    and build FINN dataflow accelerators sized to that P."""
    from a2qflow.log import quiet_terminal

    ctx.obj = {"debug": debug}
    if not debug:
        quiet_terminal()


# ------------------------------------------------------------------------------ train, export, certify


def recipe_options(fn):
    """The quantization recipe's options, shared by train and build."""
    for decorator in reversed([
        click.option("--recipe", "method", default=C.DEFAULT_METHOD, show_default=True, type=click.Choice(RECIPE_NAMES)),
        click.option("--acc-bits", default=C.DEFAULT_ACC_BITS, show_default=True, type=click.IntRange(2, 64),
                     help="accumulator width P guaranteed for every constrained layer"),
        click.option("--layer-acc-bits", multiple=True, help="per-layer P, LAYER=BITS (repeatable)"),
        click.option("--weight-bits", default=C.DEFAULT_WEIGHT_BITS, show_default=True, type=click.IntRange(1, 16)),
        click.option("--act-bits", default=C.DEFAULT_ACT_BITS, show_default=True, type=click.IntRange(1, 16)),
        click.option("--input-bits", default=C.DEFAULT_INPUT_BITS, show_default=True, type=click.IntRange(1, 16),
                     help="bits of the first layer's input quantizer"),
        click.option("--depthwise-recipe", default=C.DEFAULT_DEPTHWISE_METHOD, show_default=True,
                     type=click.Choice(RECIPE_NAMES), help="recipe of depthwise convs (A2Q+ paper: A2Q does better)"),
        click.option("--first-recipe", default=None, type=click.Choice(RECIPE_NAMES),
                     help="recipe of the first layer [default: --recipe]; a2q suits conv nets under a2q+"),
        click.option("--first-layer", default="constrained", show_default=True,
                     type=click.Choice(["constrained", "unconstrained"])),
        click.option("--last-layer", default="constrained", show_default=True,
                     type=click.Choice(["constrained", "unconstrained"])),
        click.option("--last-weight-bits", default=C.DEFAULT_LAST_WEIGHT_BITS, show_default=True,
                     type=click.IntRange(1, 16), help="weight bits of an unconstrained last layer"),
    ]):
        fn = decorator(fn)
    return fn


def training_options(fn):
    """What and how long to train, shared by train and build."""
    for decorator in reversed([
        click.option("--model", default=C.DEFAULT_MODEL, show_default=True, type=click.Choice(NETWORK_NAMES),
                     help="the network to train"),
        click.option("--dataset", default=C.DEFAULT_DATASET, show_default=True, type=click.Choice(DATASET_NAMES)),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="folder holding a real dataset (mnist, cifar10, bsd300)"),
        click.option("--width", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="channel width multiplier"),
        click.option("--float-epochs", default=C.DEFAULT_FLOAT_EPOCHS, show_default=True, type=click.IntRange(min=0)),
        click.option("--qat-epochs", default=C.DEFAULT_QAT_EPOCHS, show_default=True, type=click.IntRange(min=0)),
        click.option("--float-checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="start from this float state_dict instead of float pre-training"),
        click.option("--no-ep-init", is_flag=True, help="skip Euclidean-projection initialisation"),
        click.option("--seed", default=C.DEFAULT_SEED, show_default=True, type=click.IntRange(min=0)),
        click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
                     help="torch threads while training (fixed: the count changes the weights)"),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="cap train/test samples (quick runs)"),
    ]):
        fn = decorator(fn)
    return fn


def _train_config(o: dict):
    """TrainConfig from the parsed training and recipe options."""
    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig

    try:
        recipe = Recipe(method=o["method"], weight_bits=o["weight_bits"], act_bits=o["act_bits"],
                        input_bits=o["input_bits"], acc_bits=o["acc_bits"],
                        layer_acc_bits=_layer_bits(o["layer_acc_bits"]), depthwise_method=o["depthwise_recipe"],
                        first_method=o["first_recipe"], first_layer=o["first_layer"], last_layer=o["last_layer"],
                        last_weight_bits=o["last_weight_bits"])
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    return TrainConfig(model=o["model"], dataset=o["dataset"], data_dir=o["data_dir"], recipe=recipe,
                       model_kwargs={"width": o["width"]} if o["width"] != 1.0 else {},
                       float_epochs=o["float_epochs"], qat_epochs=o["qat_epochs"], seed=o["seed"],
                       ep_init=not o["no_ep_init"], float_checkpoint=o["float_checkpoint"], limit=o["limit"],
                       threads=o["threads"])


@main.command()
@training_options
@recipe_options
@click.option("--out", type=click.Path(), default="runs/train", show_default=True)
def train(out: str, **options) -> None:
    """Float pre-training -> EP-init -> QAT with a quantization recipe."""
    from a2qflow.models.train import train as run_train

    cfg = _train_config(options)
    result = run_train(cfg, out)
    console.print(f"[bold]{cfg.model}/{cfg.dataset} {cfg.recipe.method} P={cfg.recipe.acc_bits}[/]: "
                  + metrics_line(result["metrics"]))
    console.print(f"checkpoint: {Path(out) / 'checkpoint.pt'}")


def metrics_line(m: dict) -> str:
    """float -> after init -> quantized, formatted (accuracy % or PSNR dB)."""
    def fmt(d: dict) -> str:
        return f"{d['accuracy']:.2f}%" if "accuracy" in d else f"{d['psnr_db']:.2f} dB"
    return f"float {fmt(m['float'])} -> after init {fmt(m['after_init'])} -> quantized {fmt(m['quant'])}"


@main.command()
@click.option("--checkpoint", type=click.Path(), required=True, help="checkpoint.pt written by `a2qflow train`")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="ONNX path (default: model.onnx beside the checkpoint)")
@click.option("--samples", default=200, show_default=True, type=click.IntRange(min=1),
              help="test samples used to prove parity")
def export(checkpoint: str, out: str | None, samples: int) -> None:
    """Export to QONNX with the quantized weights, prove parity, write the certificate."""
    from a2qflow.models.export import export_checkpoint

    path, certs, parity = export_checkpoint(checkpoint, out, samples)
    _print_certificate(certs)
    agree = "" if parity.argmax_agreement is None else f", argmax agreement {100 * parity.argmax_agreement:.1f}%"
    console.print(f"parity with the brevitas model on {parity.samples} test samples: max abs error "
                  f"{parity.max_abs_error:.2e}{agree}")
    console.print(f"wrote {path} and {path.with_suffix('.certificate.json')}")


@main.command()
@click.argument("onnx_file", type=click.Path())
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="write the certificate JSON here")
def certify(onnx_file: str, json_out: str | None) -> None:
    """Check every layer an exported graph records against its accumulator bound, with every
    quantity read from the graph itself (the metadata is checked, not trusted)."""
    from a2qflow.models import certificate
    from a2qflow.models.graph import load_graph

    certs = certificate.certify(load_graph(onnx_file))
    _print_certificate(certs)
    if json_out:
        certificate.write_certificate(certs, Path(json_out))
    certificate.check(certs)
    console.print("[green]certificate: every constrained layer fits its accumulator[/]")


def _print_certificate(certs: list) -> None:
    from a2qflow.models.certificate import SUMMARY_LEGEND, summary_rows

    console.print(_table(summary_rows(certs), "accumulator certificate"))
    console.print(SUMMARY_LEGEND, style="dim")


# ------------------------------------------------------------------------------ build, demo


def build_options(fn):
    cfg = BuildConfig()
    for decorator in reversed([
        click.option("--board", default=cfg.board, show_default=True, type=BOARD, help="target board (FINN's names)"),
        click.option("--flow", default=cfg.flow, show_default=True, type=click.Choice(FLOWS),
                     help="estimate: FINN reports only; oss: + Yosys synthesis and Verilator simulation of every "
                          "RTL layer; bitstream: + Vivado; auto: bitstream when Vivado and Vitis HLS are found, else oss"),
        click.option("--sizing", default=cfg.sizing, show_default=True, type=click.Choice(SIZING_MODES),
                     help="accumulator width: the certified P, the tighter value-based width, or INT32 (baseline)"),
        click.option("--lut-only", is_flag=True, help="Yosys without DSP inference (FINN's LUT-fabric MVAUs)"),
        click.option("--target-fps", type=click.IntRange(min=1), default=None,
                     help="auto-folding target when no folding config ships"),
        click.option("--folding", type=click.Path(exists=True, dir_okay=False), default=None, help="FINN folding JSON"),
        click.option("--parity-samples", default=cfg.parity_samples, show_default=True, type=click.IntRange(min=1),
                     help="test samples checked after every stage"),
        click.option("--runtime-weights", is_flag=True, help="runtime-writeable weights (FINN would size from datatypes)"),
        click.option("--from-step", default=None, help="resume the run folder --out at this step; build options not given "
                                                              "again are the earlier run's"),
    ]):
        fn = decorator(fn)
    return fn


# build options a resumed run takes from the earlier run's run.json unless given again
RESUMED_OPTIONS = ("board", "flow", "sizing", "lut_only", "target_fps", "folding", "parity_samples", "runtime_weights")


def _build_config(o: dict, model_name: str | None, out: str | None = None) -> BuildConfig:
    cfg = BuildConfig(board=_board(o["board"]), flow=o["flow"], sizing=o["sizing"], lut_only=o["lut_only"],
                      target_fps=o["target_fps"], folding=o["folding"], parity_samples=o["parity_samples"],
                      runtime_weights=o["runtime_weights"], from_step=o["from_step"], model_name=model_name)
    if cfg.from_step and out:   # resume with the earlier build's settings, as FINN's builder does
        from a2qflow.build_flows.run_folder import RunFolder

        recorded = ((RunFolder(Path(out)).read_run() or {}).get("config") or {})
        for name in RESUMED_OPTIONS:
            if name in recorded and not _given(name):
                setattr(cfg, name, recorded[name])
    return cfg


@main.command()
@click.option("--onnx", "onnx_file", type=click.Path(), default=None,
              help="build this QONNX graph (an a2qflow export or any brevitas/FINN graph)")
@click.option("--checkpoint", type=click.Path(), default=None, help="export and build this trained checkpoint")
@training_options
@recipe_options
@build_options
@click.option("--out", type=click.Path(), default=None,
              help="run folder (default runs/<model>-<board>-P<P>; with --onnx runs/<graph's model>-<board>)")
def build(onnx_file: str | None, checkpoint: str | None, out: str | None, **options) -> None:
    """Build a FINN dataflow accelerator whose MVAU accumulators are sized to the certified P.
    Without --onnx or --checkpoint the model is trained first (the training options)."""
    from a2qflow.build_flows.pipeline import PipelineConfig, run

    source_given = onnx_file is not None or checkpoint is not None
    cfg = PipelineConfig(onnx=onnx_file, checkpoint=checkpoint,
                         train=None if source_given or options["from_step"] else _train_config(options),
                         dataset=options["dataset"] if onnx_file else None, data_dir=options["data_dir"],
                         build=_build_config(options, options["model"] if not onnx_file else None, out), out=out)
    if onnx_file and not _given("dataset"):
        cfg.dataset = None   # the graph's own dataset, if it records one
    result = run(cfg, log=lambda line: console.print(line, markup=False))
    _print_build(result)


def _given(name: str) -> bool:
    """Whether the user gave an option on the command line (not its default)."""
    ctx = click.get_current_context()
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _print_build(result) -> None:
    from a2qflow.build_flows.terminal import build_summary

    console.print(build_summary(result.folder), markup=False)
    record = result.record
    if record["skipped"]:
        console.print(f"[yellow]skipped {len(record['skipped'])} stages or layers[/], each listed with why in "
                      f"{result.folder.report('summary.md')}")
    console.print(f"[green]build {record['status']}[/] ({record['flow']} flow, {record['wall_s']:.1f} s): "
                  f"{result.folder.root}")


@main.command()
@click.option("--out", type=click.Path(), default="runs/demo", show_default=True)
@click.option("--acc-bits", default=None, type=click.IntRange(2, 64), help="P (default: the recipe default)")
def demo(out: str, acc_bits: int | None) -> None:
    """The embedded default: TFC on the bundled digits, A2Q+ at P bits, trained, exported,
    certified, built for Pynq-Z2 (with Yosys and Verilator when Vivado is absent),
    packaged and benchmarked on the simulated board."""
    from a2qflow.build_flows.board import BenchArgs, bench_sim
    from a2qflow.build_flows.pipeline import PipelineConfig, run

    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig

    train_cfg = TrainConfig(recipe=Recipe(acc_bits=acc_bits or C.DEFAULT_ACC_BITS))
    result = run(PipelineConfig(train=train_cfg, build=BuildConfig(board="Pynq-Z2"), out=out),
                 log=lambda line: console.print(line, markup=False))
    _print_build(result)
    console.print("[bold]benchmark of the deployment package on the simulated board[/]")
    sys.exit(bench_sim(result.folder, BenchArgs(), log=lambda line: err_console.print(line, markup=False)))


# ------------------------------------------------------------------------------ compare-acc, sweep, report


def _acc_bits(ctx, param, text: str) -> tuple[int, ...]:
    from a2qflow.build_flows.compare import parse_acc_bits

    try:
        return parse_acc_bits(text)
    except ValueError as err:
        raise click.BadParameter(str(err)) from err


def _recipes(ctx, param, text: str) -> tuple[str, ...]:
    recipes = tuple(r.strip() for r in text.split(",") if r.strip())
    bad = [r for r in recipes if r not in RECIPE_NAMES]
    if bad or not recipes:
        raise click.BadParameter(f"{text!r}: a comma list of {', '.join(RECIPE_NAMES)}")
    return recipes


@main.command("compare-acc")
@click.option("--model", default=C.DEFAULT_MODEL, show_default=True, type=click.Choice(NETWORK_NAMES))
@click.option("--dataset", default=C.DEFAULT_DATASET, show_default=True, type=click.Choice(DATASET_NAMES))
@click.option("--board", default=DEFAULT_BOARD, show_default=True, type=BOARD)
@click.option("--acc-bits", default=",".join(map(str, C.DEFAULT_GRID_ACC_BITS)), show_default=True,
              callback=_acc_bits, help="a comma list or START:STOP[:STEP] (STOP included)")
@click.option("--recipes", default=",".join(RECIPE_NAMES), show_default=True, callback=_recipes)
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1), help="number of seeds (0..N-1)")
@click.option("--input-bits", default=C.DEFAULT_INPUT_BITS, show_default=True, type=click.IntRange(1, 16))
@click.option("--float-epochs", default=C.DEFAULT_FLOAT_EPOCHS, show_default=True, type=click.IntRange(min=0))
@click.option("--qat-epochs", default=C.DEFAULT_QAT_EPOCHS, show_default=True, type=click.IntRange(min=0))
@click.option("--lut-only", is_flag=True, help="synthesize without DSP inference (FINN's LUT-fabric MVAUs)")
@click.option("--runtime-weights", is_flag=True,
              help="also build each a2q/a2q+ cell with runtime-writeable weights: guaranteed P vs FINN's datatype sizing")
@click.option("--out", type=click.Path(), default=None, help="default runs/compare-<model>-<board>")
def compare_acc(model: str, dataset: str, board: str, acc_bits: tuple[int, ...], recipes: tuple[str, ...], seeds: int,
                input_bits: int, float_epochs: int, qat_epochs: int, lut_only: bool, runtime_weights: bool,
                out: str | None) -> None:
    """Train, export, build and synthesize (Yosys) each recipe x P x seed; LUT vs P and accuracy."""
    from a2qflow.build_flows import compare

    spec = compare.GridSpec(model=model, dataset=dataset, board=_board(board), recipes=recipes, acc_bits=acc_bits,
                            seeds=tuple(range(seeds)), input_bits=input_bits, float_epochs=float_epochs,
                            qat_epochs=qat_epochs, lut_only=lut_only, runtime_weights=runtime_weights)
    root = Path(out or f"runs/compare-{model}-{spec.board}")
    results, head = compare.run_grid(spec, root, console)
    _finish_grid(head, results, root)


def _finish_grid(head: dict, results: list[dict], root: Path) -> None:
    """Print a grid's summary; exit 1 when a cell failed (the others' results are written)."""
    from a2qflow.build_flows.terminal import grid_summary

    console.print(grid_summary(root, head), markup=False)
    failed = [r for r in results if r.get("status") == "failed"]
    if failed:
        err_console.print(f"[red]error:[/] {len(failed)} cell(s) failed: " + "; ".join(r["key"] for r in failed))
        sys.exit(1)


@main.command()
@click.option("--grid", "grid_file", type=click.Path(), required=True,
              help="sweep YAML (GridSpec fields; model/dataset/board may be lists)")
@click.option("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786); "
              "default: a LocalCluster sized to this machine")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="LocalCluster workers (default: one per core)")
@click.option("--out", type=click.Path(), default=None, help="default: the file's `out`, else runs/sweep-<file stem>")
def sweep(grid_file: str, scheduler: str | None, workers: int | None, out: str | None) -> None:
    """Run compare-acc cells of a sweep file as Dask tasks; same results as a serial run."""
    from rich.progress import Progress

    from a2qflow.build_flows import sweep as sweeps

    specs, file_out = sweeps.load_sweep(grid_file)
    root = Path(out or file_out or f"runs/sweep-{Path(grid_file).stem}")
    with Progress(console=console) as progress:
        task = progress.add_task("sweep cells", total=len(sweeps.sweep_cells(specs)))

        def done(row: dict) -> None:
            progress.update(task, advance=1, description=f"{row['key']}: {row.get('status', 'complete')}")

        results, head = sweeps.run_sweep(specs, root, scheduler, workers, done,
                                         log=lambda line: console.print(line, markup=False))
    _finish_grid(head if len(specs) == 1 else {}, results, root)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
def report(runs: tuple[str, ...]) -> None:
    """Regenerate the Markdown and HTML summary of build, compare-acc or sweep folders from
    their JSON/CSV."""
    from a2qflow.build_flows.regenerate import regenerate

    for run in runs:
        summary = regenerate(run)
        console.print(f"wrote {summary} and {summary.with_suffix('.html')}")


# ------------------------------------------------------------------------------ package, bench, deploy


RUN_DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@main.command("package")
@click.option("--run", "run_dir", required=True, type=RUN_DIR, help="run folder of a finished `a2qflow build`")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="trained checkpoint whose predictions the board must reproduce (default: <run>/train/checkpoint.pt)")
@click.option("--samples", default=500, show_default=True, type=click.IntRange(min=1),
              help="test samples shipped (from the test split)")
def package(run_dir: Path, checkpoint: str | None, samples: int) -> None:
    """Write <run>/package: bitfile (if built), driver settings, test set, host predictions, board code."""
    import json

    from a2qflow.build_flows.package import ensure_package
    from a2qflow.build_flows.run_folder import RunFolder

    path = ensure_package(RunFolder(run_dir), checkpoint, samples, force=True,
                          log=lambda line: err_console.print(line, markup=False))
    m = json.loads((path / "manifest.json").read_text())
    console.print(f"package for {m['board']}: {path} ({len(m['files'])} files, {m['test_set']['samples']} test "
                  f"samples{'' if m['bitfile'] else '; sim-only: ' + m['no_bitfile_reason']})", markup=False)


def bench_options(fn):
    for decorator in reversed([
        click.option("--board", default=None, type=BOARD, help="the board's name (default: the package's, or PYNQ's "
                     "BOARD variable on a board); another board is refused"),
        click.option("--batch-sizes", default=None, help="comma list (default 1,4,16,64,256 on the simulated board)"),
        click.option("--repeats", type=click.IntRange(min=1), default=None, help="throughput runs per batch size"),
        click.option("--latency-runs", type=click.IntRange(min=1), default=None),
    ]):
        fn = decorator(fn)
    return fn


def _bench_args(board, batch_sizes, repeats, latency_runs):
    from a2qflow.build_flows.board import BenchArgs

    return BenchArgs(_board(board) if board else None, batch_sizes, repeats, latency_runs).validate()


@main.command("bench")
@click.option("--run", "run_dir", required=True, type=RUN_DIR)
@click.option("--sim", is_flag=True, help="run on the simulated board (required here: this host has no FPGA)")
@bench_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="default <run>/reports/bench-sim")
def bench(run_dir: Path, sim: bool, board: str | None, batch_sizes: str | None, repeats: int | None,
          latency_runs: int | None, out: Path | None) -> None:
    """Benchmark the run's deployment package on the simulated board and print the report."""
    from a2qflow.build_flows.board import bench_sim
    from a2qflow.build_flows.run_folder import RunFolder

    if not sim:
        raise click.UsageError("this host has no FPGA board: use --sim, or `a2qflow deploy --run DIR --host "
                               "user@board --bench`")
    args = _bench_args(board, batch_sizes, repeats, latency_runs)
    sys.exit(bench_sim(RunFolder(run_dir), args, out, log=lambda line: err_console.print(line, markup=False)))


@main.command("deploy")
@click.option("--run", "run_dir", required=True, type=RUN_DIR)
@click.option("--host", required=True, help="ssh destination, e.g. xilinx@pynq")
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=None, help="ssh port")
@click.option("--identity", "-i", type=click.Path(exists=True, dir_okay=False), default=None, help="ssh private key")
@click.option("--ssh-option", "-o", "ssh_options", multiple=True, help="extra ssh/scp -o option (repeatable)")
@click.option("--remote-dir", default=None, help="package folder on the board (default a2qflow/<run name>, relative "
              "to the remote home); an existing folder a2qflow did not create is refused")
@click.option("--python", "remote_python", default="python3", show_default=True,
              help="the board's python command; PYNQ images need root for the FPGA, e.g. "
                   "'sudo -E /usr/local/share/pynq-venv/bin/python3'")
@click.option("--bench", "run_bench", is_flag=True, help="run the benchmark and bring the report back")
@click.option("--sim", is_flag=True, help="the far side runs the simulated board (a host with a2qflow; for tests)")
@bench_options
def deploy(run_dir: Path, host: str, port: int | None, identity: str | None, ssh_options: tuple[str, ...],
           remote_dir: str | None, remote_python: str, run_bench: bool, sim: bool, board: str | None,
           batch_sizes: str | None, repeats: int | None, latency_runs: int | None) -> None:
    """Copy the run's deployment package to a board over ssh, verify it there, and with
    --bench run the benchmark and bring the report back to <run>/reports/board."""
    from a2qflow.build_flows.board import DeployConfig, SshTarget, deploy as run_deploy
    from a2qflow.build_flows.run_folder import RunFolder

    cfg = DeployConfig(SshTarget(host, port, identity, list(ssh_options)), remote_dir, remote_python, run_bench, sim,
                       _bench_args(board, batch_sizes, repeats, latency_runs))
    sys.exit(run_deploy(RunFolder(run_dir), cfg, log=lambda line: console.print(line, markup=False)))


if __name__ == "__main__":
    main()
