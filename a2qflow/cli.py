"""The `a2qflow` command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)


def _parse_layer_bits(items: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, bits = item.partition("=")
        if not sep or not bits.isdigit():
            raise click.BadParameter(f"{item!r}: expected LAYER=BITS, e.g. fc.0=16", param_hint="--layer-acc-bits")
        out[name] = int(bits)
    return out


def _table(rows: list[dict], title: str) -> Table:
    table = Table(title=title)
    for key in rows[0] if rows else []:
        table.add_column(key)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    return table


@click.group()
@click.version_option(package_name="a2qflow")
def main() -> None:
    """a2qflow: train with A2Q/A2Q+, export to QONNX with a certified accumulator width P,
    and build FINN dataflow accelerators sized to that P."""


@main.command()
@click.option("--model", default="tfc", show_default=True, help="tfc | cnv | mobilenet | resnet | espcn")
@click.option("--dataset", default="digits", show_default=True,
              help="digits | mnist1d | mnist | cifar10 | bsd300 | photos")
@click.option("--data-dir", type=click.Path(), default=None, help="folder holding a real dataset (mnist, cifar10, bsd300)")
@click.option("--recipe", "method", default="a2q+", show_default=True, type=click.Choice(["qat", "a2q", "a2q+"]))
@click.option("--acc-bits", default=16, show_default=True, help="target accumulator width P for every constrained layer")
@click.option("--layer-acc-bits", multiple=True, help="per-layer P, LAYER=BITS (repeatable)")
@click.option("--weight-bits", default=4, show_default=True)
@click.option("--act-bits", default=4, show_default=True)
@click.option("--input-bits", default=8, show_default=True)
@click.option("--depthwise-recipe", default="a2q", show_default=True, type=click.Choice(["qat", "a2q", "a2q+"]),
              help="recipe of depthwise convs (A2Q+ paper: A2Q does better there)")
@click.option("--first-layer", default="constrained", show_default=True, type=click.Choice(["constrained", "unconstrained"]))
@click.option("--last-layer", default="constrained", show_default=True, type=click.Choice(["constrained", "unconstrained"]))
@click.option("--last-weight-bits", default=8, show_default=True, help="weight bits of an unconstrained last layer")
@click.option("--width", default=1.0, show_default=True, help="channel width multiplier")
@click.option("--float-epochs", default=20, show_default=True)
@click.option("--qat-epochs", default=20, show_default=True)
@click.option("--float-checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="start from this float state_dict instead of float pre-training")
@click.option("--no-ep-init", is_flag=True, help="skip Euclidean-projection initialisation")
@click.option("--seed", default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="cap train/test samples (quick runs)")
@click.option("--out", type=click.Path(), default="runs/train", show_default=True)
def train(model: str, dataset: str, data_dir: str | None, method: str, acc_bits: int,
          layer_acc_bits: tuple[str, ...], weight_bits: int, act_bits: int, input_bits: int,
          depthwise_recipe: str, first_layer: str, last_layer: str, last_weight_bits: int, width: float,
          float_epochs: int, qat_epochs: int, float_checkpoint: str | None, no_ep_init: bool, seed: int,
          limit: int | None, out: str) -> None:
    """Float pre-training -> EP-init -> QAT with a quantization recipe."""
    from a2qflow.models.recipes import Recipe
    from a2qflow.models.train import TrainConfig, train as run_train

    try:
        recipe = Recipe(method=method, weight_bits=weight_bits, act_bits=act_bits, input_bits=input_bits,
                        acc_bits=acc_bits, layer_acc_bits=_parse_layer_bits(layer_acc_bits),
                        depthwise_method=depthwise_recipe, first_layer=first_layer, last_layer=last_layer,
                        last_weight_bits=last_weight_bits)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    cfg = TrainConfig(model=model, dataset=dataset, data_dir=data_dir, recipe=recipe,
                      model_kwargs={"width": width} if width != 1.0 else {}, float_epochs=float_epochs,
                      qat_epochs=qat_epochs, seed=seed, ep_init=not no_ep_init,
                      float_checkpoint=float_checkpoint, limit=limit)
    result = _fail_clean(lambda: run_train(cfg, out))
    m = result["metrics"]
    console.print(f"[bold]{model}/{dataset} {method} P={acc_bits}[/]: float {m['float']} -> after init "
                  f"{m['after_init']} -> quantized {m['quant']}")
    console.print(f"checkpoint: {Path(out) / 'checkpoint.pt'}")


@main.command()
@click.option("--checkpoint", type=click.Path(), required=True, help="checkpoint.pt written by `a2qflow train`")
@click.option("--out", type=click.Path(), default=None, help="ONNX path (default: model.onnx beside the checkpoint)")
@click.option("--samples", default=200, show_default=True, type=click.IntRange(min=1), help="test samples used to prove parity")
def export(checkpoint: str, out: str | None, samples: int) -> None:
    """Export to QONNX with the quantized weights, prove parity, write the certificate."""
    _export(checkpoint, out, samples)


def _export(checkpoint: str, out: str | None, samples: int) -> Path:
    from a2qflow.models.export import export_checkpoint

    path, certs, parity = _fail_clean(lambda: export_checkpoint(checkpoint, out, samples))
    _print_certificate(certs)
    console.print(f"parity on {parity.samples} test samples: max abs error {parity.max_abs_error:.2e}"
                  + (f", argmax agreement {100 * parity.argmax_agreement:.1f}%" if parity.argmax_agreement is not None else ""))
    console.print(f"wrote {path} and {path.with_suffix('.certificate.json')}")
    return path


@main.command()
@click.option("--out", type=click.Path(), default="runs/demo", show_default=True)
@click.option("--acc-bits", default=12, show_default=True)
@click.pass_context
def demo(ctx: click.Context, out: str, acc_bits: int) -> None:
    """The embedded default: TFC on the bundled digits, A2Q+ at P bits, trained, exported,
    certified, built for Pynq-Z2 (with Yosys synthesis when Vivado is absent), packaged and
    benchmarked on the simulated board."""
    ctx.invoke(build, model="tfc", dataset="digits", board="Pynq-Z2", acc_bits=acc_bits, method="a2q+", out=out)
    from a2qflow.cli_deploy import bench

    console.print("[bold]benchmark of the deployment package on the simulated board[/]")
    ctx.invoke(bench, run_dir=Path(out), sim=True)


@main.command()
@click.option("--model", default="tfc", show_default=True, help="network to train when no --checkpoint/--onnx is given")
@click.option("--dataset", default="digits", show_default=True)
@click.option("--board", default="Pynq-Z2", show_default=True, help="target board (FINN's board names)")
@click.option("--acc-bits", default=12, show_default=True, help="P when training the default")
@click.option("--recipe", "method", default="a2q+", show_default=True, type=click.Choice(["qat", "a2q", "a2q+"]))
@click.option("--checkpoint", type=click.Path(), default=None, help="build this trained checkpoint")
@click.option("--onnx", "onnx_file", type=click.Path(), default=None, help="build this QONNX graph")
@click.option("--flow", default="auto", show_default=True, type=click.Choice(["auto", "estimate", "oss", "bitstream"]),
              help="estimate: FINN reports only; oss: + Yosys synthesis of every RTL layer; bitstream: + Vivado "
                   "(and Yosys); auto: bitstream when Vivado and Vitis HLS are found, else oss")
@click.option("--lut-only", is_flag=True, help="Yosys without DSP inference (FINN's LUT-fabric MVAUs)")
@click.option("--sizing", default="guaranteed", show_default=True, type=click.Choice(["guaranteed", "value", "int32"]),
              help="accumulator width: the certified P, the tighter value-based width, or INT32 (baseline)")
@click.option("--target-fps", type=int, default=None, help="auto-folding target when no folding config ships")
@click.option("--folding", type=click.Path(exists=True, dir_okay=False), default=None, help="FINN folding JSON")
@click.option("--parity-samples", default=32, show_default=True, help="test samples checked after every stage")
@click.option("--runtime-weights", is_flag=True, help="runtime-writeable weights (FINN would size from datatypes)")
@click.option("--from-step", default=None, help="resume an existing run folder from this step")
@click.option("--data-dir", type=click.Path(), default=None,
              help="folder of the dataset the model was trained on (mnist, cifar10, bsd300)")
@click.option("--out", type=click.Path(), default=None,
              help="run folder (default runs/<model>-<board>-P<acc-bits>; with --onnx runs/<graph's model>-<board>)")
def build(model: str, dataset: str, board: str, acc_bits: int, method: str, checkpoint: str | None,
          onnx_file: str | None, flow: str, lut_only: bool, sizing: str, target_fps: int | None, folding: str | None,
          parity_samples: int, runtime_weights: bool, from_step: str | None, data_dir: str | None,
          out: str | None) -> None:
    """Build a FINN dataflow accelerator whose MVAU accumulators are sized to the certified P."""
    from a2qflow.build_flows import flow as flows
    from a2qflow.build_flows import reference
    from a2qflow.hw_configs import get_board

    _fail_clean(lambda: get_board(board))
    if checkpoint and onnx_file:
        raise click.UsageError("give --checkpoint or --onnx, not both")
    graph = _fail_clean(lambda: flows.load_graph(onnx_file)) if onnx_file else None
    if out is None and graph is not None:
        recorded = graph.get_metadata_prop("a2qflow.model")
        out = f"runs/{json.loads(recorded) if recorded else Path(onnx_file).stem}-{board}"
    out = Path(out or f"runs/{model}-{board}-P{acc_bits}")
    if onnx_file is None:
        if checkpoint is None:
            console.print(f"[bold]no checkpoint given: training {model}/{dataset} {method} P={acc_bits} briefly[/]")
            click.get_current_context().invoke(train, model=model, dataset=dataset, method=method,
                                               acc_bits=acc_bits, input_bits=4, float_epochs=10, qat_epochs=10,
                                               data_dir=data_dir, out=str(out / "train"))
            checkpoint = str(out / "train" / "checkpoint.pt")
        onnx_file = str(_export(checkpoint, str(out / "export" / "model.onnx"), 200))
        ref = _fail_clean(lambda: reference.from_checkpoint(checkpoint, parity_samples))
        source = "trained brevitas model"
    else:
        ref, source = _fail_clean(lambda: reference.from_graph(graph, parity_samples, data_dir=data_dir))
    opts = flows.BuildOptions(board=board, flow=flow, sizing=sizing, target_fps=target_fps, folding=folding,
                              model_name=model, from_step=from_step, runtime_weights=runtime_weights,
                              lut_only=lut_only)
    console.print(f"building {onnx_file} for {board} (parity reference: {source})")
    run = _fail_clean(lambda: flows.build(onnx_file, out, ref, opts))
    console.print((out / "reports" / "summary.md").read_text())
    if run["skipped"]:
        console.print(f"[yellow]skipped {len(run['skipped'])} stages or layers[/], each listed with why in the report")
    console.print(f"[green]build {run['status']}[/] ({run['flow']} flow, {run['wall_s']:.1f} s): {out}")


def _acc_bits_option(text: str) -> tuple[int, ...]:
    from a2qflow.build_flows.compare import parse_acc_bits

    try:
        return parse_acc_bits(text)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--acc-bits") from err


@main.command("compare-acc")
@click.option("--model", default="tfc", show_default=True)
@click.option("--dataset", default="digits", show_default=True)
@click.option("--board", default="Pynq-Z2", show_default=True)
@click.option("--acc-bits", default="10:20:2", show_default=True, help="START:STOP[:STEP] or a comma list")
@click.option("--recipes", default="qat,a2q,a2q+", show_default=True)
@click.option("--seeds", default=1, show_default=True, help="number of seeds (0..N-1)")
@click.option("--float-epochs", default=10, show_default=True)
@click.option("--qat-epochs", default=10, show_default=True)
@click.option("--lut-only", is_flag=True, help="synthesize without DSP inference (FINN's LUT-fabric MVAUs)")
@click.option("--out", type=click.Path(), default=None, help="default runs/compare-<model>-<board>")
def compare_acc(model: str, dataset: str, board: str, acc_bits: str, recipes: str, seeds: int,
                float_epochs: int, qat_epochs: int, lut_only: bool, out: str | None) -> None:
    """Train, export, build and synthesize (Yosys) each recipe x P x seed; LUT vs P and accuracy."""
    from a2qflow.build_flows import compare
    from a2qflow.hw_configs import get_board

    _fail_clean(lambda: get_board(board))
    recipe_list = tuple(r.strip() for r in recipes.split(","))
    bad = [r for r in recipe_list if r not in ("qat", "a2q", "a2q+")]
    if bad:
        raise click.BadParameter(f"unknown recipe(s) {bad}; valid: qat, a2q, a2q+", param_hint="--recipes")
    spec = compare.GridSpec(model=model, dataset=dataset, board=board, recipes=recipe_list,
                            acc_bits=_acc_bits_option(acc_bits), seeds=tuple(range(seeds)),
                            float_epochs=float_epochs, qat_epochs=qat_epochs, lut_only=lut_only)
    root = Path(out or f"runs/compare-{model}-{board}")
    root.mkdir(parents=True, exist_ok=True)
    results = compare.run_serial(spec.cells(), spec, root, console)
    _finish_grid(compare.write_outputs(results, root), results, root)


def _finish_grid(head: dict, results: list[dict], root: Path) -> None:
    """Print a grid's summary; exit 1 when a cell failed (the others' results are written)."""
    console.print((root / "summary.md").read_text(), markup=False)
    console.print(f"results: {root / 'results.csv'}; headline: {head}", markup=False)
    failed = [r for r in results if r.get("status") == "failed"]
    if failed:
        console.print(f"[red]error:[/] {len(failed)} cell(s) failed: " + "; ".join(r["key"] for r in failed))
        sys.exit(1)


@main.command()
@click.option("--grid", "grid_file", type=click.Path(), required=True, help="sweep YAML (GridSpec fields; "
              "model/dataset/board may be lists)")
@click.option("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786); "
              "default: a LocalCluster sized to this machine")
@click.option("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
@click.option("--out", type=click.Path(), default=None, help="default: the file's `out`, else runs/sweep-<file stem>")
def sweep(grid_file: str, scheduler: str | None, workers: int | None, out: str | None) -> None:
    """Run compare-acc cells of a sweep file as Dask tasks; same results as a serial run."""
    from rich.progress import Progress

    from a2qflow.build_flows import sweep as sweeps
    from a2qflow.hw_configs import get_board

    specs, file_out = _fail_clean(lambda: sweeps.load_sweep(grid_file))
    for spec in specs:
        _fail_clean(lambda: get_board(spec.board))
    root = Path(out or file_out or f"runs/sweep-{Path(grid_file).stem}")
    root.mkdir(parents=True, exist_ok=True)
    jobs = sweeps.sweep_cells(specs)
    from distributed import Client

    client = Client(scheduler) if scheduler else sweeps.local_client(workers)
    console.print(f"sweep: {len(jobs)} cells on {scheduler or 'a LocalCluster'} "
                  f"({len(client.scheduler_info()['workers'])} workers) -> {root}")
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("sweep cells", total=len(jobs))

            def done(row):
                progress.update(task, advance=1, description=f"{row['key']}: {row.get('status', 'complete')}")

            results = sweeps.run_dask(jobs, root.resolve(), client, done)
    finally:
        client.close()
        if not scheduler:
            client.cluster.close()
    _finish_grid(sweeps.write_sweep_outputs(results, root, nested=len(specs) > 1), results, root)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
def report(runs: tuple[str, ...]) -> None:
    """Regenerate the Markdown and HTML summary of build, compare-acc or sweep folders from
    their JSON/CSV."""
    from a2qflow.build_flows.report import regenerate

    for run in runs:
        summary = _fail_clean(lambda: regenerate(run))
        console.print(f"wrote {summary} and {summary.with_suffix('.html')}")


@main.command()
@click.argument("onnx_file", type=click.Path())
@click.option("--json-out", type=click.Path(), default=None, help="write the certificate JSON here")
def certify(onnx_file: str, json_out: str | None) -> None:
    """Check every recorded layer of an exported graph against its accumulator bound."""
    from a2qflow.build_flows import certificate

    from a2qflow.build_flows.flow import load_graph

    certs = _fail_clean(lambda: certificate.certify(load_graph(onnx_file)))
    _print_certificate(certs)
    if json_out:
        certificate.write_certificate(certs, Path(json_out))
    _fail_clean(lambda: certificate.check(certs))
    console.print("[green]certificate: every constrained layer fits its accumulator[/]")


def _print_certificate(certs: list) -> None:
    from a2qflow.build_flows.certificate import summary_rows

    console.print(_table(summary_rows(certs), "accumulator certificate"))


def _fail_clean(fn):
    """Run fn; turn expected errors into one clear line and exit code 1."""
    try:
        return fn()
    except (ValueError, FileNotFoundError, RuntimeError, ArithmeticError) as err:
        console.print(f"[red]error:[/] {err}")
        sys.exit(1)


from a2qflow.cli_deploy import COMMANDS as DEPLOY_COMMANDS  # noqa: E402 - package, bench, deploy

for _command in DEPLOY_COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
