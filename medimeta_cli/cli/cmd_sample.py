"""``medimeta sample ID``: few-shot episodes, per-class subsets and contact sheets."""

from __future__ import annotations

import csv
import io
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medimeta_cli.cli.options import (
    ClassesOption,
    CommonOptions,
    OriginalSplitOption,
    SeedOption,
    TaskOption,
    complete_dataset_id,
    with_common_options,
)
from medimeta_cli.cli.session import Session, session

if TYPE_CHECKING:
    from medimeta_cli.dataset.gate import DatasetFolder
    from medimeta_cli.dataset.selection import Selection
    from medimeta_cli.sample.files import EpisodeFormat
    from medimeta_cli.sample.results import EpisodeSample


#: Command lines the help shows under "Examples".
EXAMPLES = (
    "medimeta sample crc --ways 5 --shots 5 --queries 15 --episodes 600 > episodes.json",
    "medimeta sample cxr --task 'disease labels' --shots 5 --queries 10 --episodes 100",
    "medimeta sample crc --per-class 10 --grid sheet.png",
    "medimeta sample --protocol medimeta-paper --first-task --out presampled",
)


@with_common_options(always_json=True)
def sample_command(
    common: CommonOptions,
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Dataset id, e.g. crc; with --check, the episode files to check; with "
            "--protocol, any number of ids (none: every installed dataset).",
            metavar="ID | FILE...",
            autocompletion=complete_dataset_id,
            show_default=False,
        ),
    ] = None,
    task: TaskOption = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            help="train, val or test. Default: train; with --protocol, test; with --check, "
            "a torchcross file's split.",
            show_default=False,
        ),
    ] = None,
    original_split: OriginalSplitOption = False,
    classes: ClassesOption = None,
    ways: Annotated[
        str | None,
        typer.Option(
            "--ways",
            "-n",
            help="Classes per episode, 'all' (every usable class), or a range A-B or "
            "A-all drawn per episode (binary tasks: always both classes). "
            "Default: 5; binary and multi-label tasks: all.",
            show_default=False,
        ),
    ] = None,
    shots: Annotated[
        str,
        typer.Option(
            "--shots",
            "-k",
            help="Support images per class (binary: positives and negatives; multi-label: "
            "of every label), or a range A-B drawn per episode.",
        ),
    ] = "5",
    queries: Annotated[int, typer.Option("--queries", "-Q", help="Query images per class.")] = 15,
    episodes: Annotated[int, typer.Option("--episodes", "-e", help="Number of episodes.")] = 1,
    min_class_images: Annotated[
        int | None,
        typer.Option(
            "--min-class-images",
            help="Leave out classes (labels: positives or negatives) with fewer images. "
            "Default: 0; with --protocol, 50.",
            show_default=False,
        ),
    ] = None,
    seed: SeedOption = 0,
    per_class: Annotated[
        int | None,
        typer.Option(
            "--per-class", help="Instead of episodes: K images of every class.", show_default=False
        ),
    ] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV (episode, set, class, index) instead of JSON.")
    ] = False,
    grid: Annotated[
        Path | None,
        typer.Option(
            "--grid", help="Also write a contact sheet PNG: one row per class.", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the episodes to one file per setting here, named as the official "
            "pipeline names them: <ID>/<task>_<shots>_<queries>_<episodes>_<split>.<ext>.",
            show_default=False,
        ),
    ] = None,
    file_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Format of the --out file: json (default), csv, or torchcross (the pickled "
            "task list medimeta.PickledMedIMetaTaskDataset loads).",
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Check JSON or torchcross episode files against the installed data: every "
            "index, label, position and (JSON) the data's identity (exit 4 when they differ).",
        ),
    ] = False,
    export_dir: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Also write every episode's support and query images as class folders "
            "here (episode-000/support/...), with episodes.json beside them; with "
            "--per-class, the subset.",
            show_default=False,
        ),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            help="Write a whole grid of episode files to --out: medimeta-paper (the paper's "
            "pre-sampling: shots 1-30 x 100 episodes, random 1-10 shots x 1000 episodes; "
            "exit 11 when a setting had to be skipped).",
            show_default=False,
        ),
    ] = None,
    first_task: Annotated[
        bool,
        typer.Option("--first-task", help="With --protocol: each dataset's first task only."),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="With --protocol: exit 11 when a setting was skipped (too few images).",
        ),
    ] = False,
) -> None:
    """Sample few-shot episodes (N-way K-shot with queries) or K images per class.

    Prints JSON (or --csv) with the upstream indices of every chosen image. The same
    seed gives the same episodes on any machine.
    """
    # The result is JSON unless --csv; an error is reported the same way (a JSON object).
    with session(replace(common, json=False) if as_csv else common) as s:
        targets = targets or []
        if check:
            _check_files(s, [Path(t) for t in targets], task=task, split=split)
            return
        if protocol is not None:
            _run_protocol(
                s,
                protocol,
                targets,
                out=out,
                first_task=first_task,
                strict=strict,
                split=split,
                original=original_split,
                min_class_images=min_class_images,
                seed=seed,
                file_format=_episode_format(file_format, out),
            )
            return
        if first_task or strict:
            from medimeta_cli.errors import UsageError

            flag = "--first-task" if first_task else "--strict"
            raise UsageError(f"{flag} applies to --protocol", hint="Add --protocol.")
        split = split or "train"
        min_class_images = min_class_images or 0
        dataset_id = _one_dataset(targets)
        episode_format = _episode_format(file_format, out)
        if out is not None and per_class is not None:
            from medimeta_cli.errors import UsageError

            raise UsageError("--out writes episodes, not --per-class subsets", hint="Drop one.")
        from medimeta_cli.cli._installed import open_installed
        from medimeta_cli.cli._selection import split_values, task_name_notice
        from medimeta_cli.dataset.reader import DatasetReader
        from medimeta_cli.sample.results import (
            ROW_COLUMNS,
            ClassSubset,
            EpisodeSample,
            SampleResult,
        )
        from medimeta_cli.sample.sheets import contact_sheet
        from medimeta_cli.sample.usecase import SampleRequest, draw_episodes, select_split

        # The dataset's own info.yaml, not the catalog, says what is installed.
        installed = open_installed(s, dataset_id)
        dataset = installed.dataset
        with DatasetReader(installed.folder()) as reader:
            request = SampleRequest(
                task=task,
                split=split,
                original=original_split,
                classes=split_values(classes),
                ways=ways,
                shots=shots,
                queries=queries,
                episodes=episodes,
                seed=seed,
                min_class_images=min_class_images,
            )
            selection = select_split(reader, request)
            if notice := task_name_notice(dataset.id, task, selection.task):
                s.out.status(notice)
            result: SampleResult
            if per_class is not None:
                subset = ClassSubset.draw(selection, per_class=per_class, seed=seed)
                for name, count in subset.short_classes():
                    s.out.warn(f"class {name!r} has only {count} images")
                result = subset
            else:
                drawn = draw_episodes(selection, request)
                for left in drawn.left_out:
                    s.out.status(
                        f"left out {selection.task.labels[left.key]!r}: fewer than "
                        f"{min_class_images} images"
                        + ("" if left.negatives is None else " (positives or negatives)")
                    )
                result = drawn
            if grid is not None:
                contact_sheet(reader, result.sheet_rows(), grid)
                s.out.status(f"contact sheet written to {grid}")
        if export_dir is not None and isinstance(result, EpisodeSample):
            _export_episodes(s, result, export_dir)
        elif export_dir is not None:
            _export_sample(s, result.picked_selection(), export_dir)
        if out is not None and isinstance(result, EpisodeSample):
            path = _write_file(s, result, out, episode_format, installed.folder())
            s.out.status(f"episodes written to {path}")
            s.out.emit_json({"file": str(path)})
        elif as_csv:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(ROW_COLUMNS)
            writer.writerows(result.rows())
            s.out.emit_text(buffer.getvalue().rstrip("\n"))
        else:
            s.out.emit_json(result.to_json())


def _run_protocol(
    s: Session,
    protocol: str,
    targets: list[str],
    *,
    out: Path | None,
    first_task: bool,
    strict: bool,
    split: str | None,
    original: bool,
    min_class_images: int | None,
    seed: int,
    file_format: EpisodeFormat,
) -> None:
    """``--protocol``: the grid's files under ``--out``, a line per task on stderr, the
    summary as JSON. A setting the data cannot meet is skipped, as the protocol has it, and
    named on stderr and in the summary; with ``--strict`` that is exit 11 (``INCOMPLETE``)
    rather than a success."""
    from medimeta_cli.cli.exit_codes import ExitCode
    from medimeta_cli.errors import UsageError
    from medimeta_cli.sample.protocol import (
        PROTOCOL_MIN_CLASS_IMAGES,
        PROTOCOL_SPLIT,
        ProtocolRequest,
        TaskOutcome,
        run_protocol,
    )

    if out is None:
        raise UsageError("--protocol writes files: it needs --out DIR", hint="Add --out DIR.")
    request = ProtocolRequest(
        out=out,
        protocol=protocol,
        dataset_ids=tuple(targets),
        first_task=first_task,
        split=split or PROTOCOL_SPLIT,
        original=original,
        min_class_images=(
            PROTOCOL_MIN_CLASS_IMAGES if min_class_images is None else min_class_images
        ),
        seed=seed,
        file_format=file_format,
    )

    def report(task: TaskOutcome) -> None:
        s.out.status(task.summary_line())
        for reason, names in task.reasons().items():
            s.out.warn(f"{task.dataset} / {task.task}: skipped {', '.join(names)}: {reason}")

    result = run_protocol(s.settings, s.catalog, request, on_task=report)
    s.out.emit_json(result.to_json())
    if not result.complete:
        s.out.warn(
            f"{result.skipped} settings skipped, {len(result.files)} files written "
            "(the summary says why)"
        )
        if strict:
            raise typer.Exit(int(ExitCode.INCOMPLETE))


def _one_dataset(targets: list[str]) -> str:
    """The one dataset id of a sampling command line."""
    from medimeta_cli.errors import UsageError

    if len(targets) != 1:
        raise UsageError(
            f"sample takes one dataset id, got {len(targets)}"
            + (f": {' '.join(targets)}" if targets else ""),
            hint="Give one id, e.g. medimeta sample crc; or --check FILE... to check files; "
            "or --protocol medimeta-paper --out DIR [ID...] for a grid (see medimeta sample "
            "--help).",
        )
    return targets[0]


def _episode_format(text: str | None, out: Path | None) -> EpisodeFormat:
    """``--format``: json, csv or torchcross; only with ``--out``."""
    from medimeta_cli.errors import UsageError
    from medimeta_cli.sample.files import EpisodeFormat

    if text is None:
        return EpisodeFormat.JSON
    if out is None:
        raise UsageError("--format applies to --out files", hint="Add --out DIR.")
    try:
        chosen = EpisodeFormat(text.strip().lower())
    except ValueError:
        raise UsageError(
            f"--format {text!r} is not json, csv or torchcross",
            hint="Give --format json, csv or torchcross.",
        ) from None
    return chosen


def _identity(s: Session, dataset_id: str) -> dict[str, Any] | None:
    """The data's identity from the install record of the root the dataset is read from."""
    from medimeta_cli.sample.usecase import identity_in

    return identity_in(s.installed_root(dataset_id), dataset_id)


def _write_file(
    s: Session, result: EpisodeSample, out: Path, fmt: EpisodeFormat, data: DatasetFolder
) -> Path:
    from medimeta_cli.sample.formats import written_notes
    from medimeta_cli.sample.usecase import write_sample

    path = write_sample(s.installed_root(result.selection.dataset.id), data, result, out, fmt)
    for note in written_notes(fmt):
        s.out.status(note)
    return path


def _check_files(s: Session, paths: list[Path], *, task: str | None, split: str | None) -> None:
    """``--check``: every file against the installed data; the first mismatch raises."""
    from medimeta_cli.errors import UsageError
    from medimeta_cli.sample.formats import CheckOptions
    from medimeta_cli.sample.usecase import check_file

    if not paths:
        raise UsageError("--check needs episode files", hint="medimeta sample --check FILE...")
    checked = []
    for path in paths:
        options = CheckOptions(task=task, split=split)
        read = check_file(s.settings, s.catalog, path, options, on_note=s.out.warn)
        s.out.status(f"{path}: {read.images} images match the installed data")
        checked.append({"file": str(path), "images": read.images})
    s.out.emit_json({"checked": checked})


def _export_sample(s: Session, picked: Selection, out: Path) -> None:
    """Write the sampled images in the imagefolder layout of ``medimeta export``."""
    from medimeta_cli.export import ExportOptions, export_selection

    options = ExportOptions(jobs=1, command=shlex.join(["medimeta", *sys.argv[1:]]))
    root = s.installed_root(picked.dataset.id)
    roots = (s.settings.root, *s.settings.shared_roots)
    result = export_selection(root, picked, out.absolute(), options, roots=roots)
    s.out.status(f"sampled images {result.status.value} in {result.out}")


def _export_episodes(s: Session, drawn: EpisodeSample, out: Path) -> None:
    """Write every episode's support and query images, and the episode file beside them."""
    from medimeta_cli.export import ExportOptions
    from medimeta_cli.sample.usecase import export_episodes

    options = ExportOptions(jobs=1, command=shlex.join(["medimeta", *sys.argv[1:]]))
    root = s.installed_root(drawn.selection.dataset.id)
    roots = (s.settings.root, *s.settings.shared_roots)
    result = export_episodes(root, drawn, out.absolute(), options, roots=roots)
    s.out.status(
        f"{len(drawn.episodes)} episodes ({result.images} images) {result.status.value} "
        f"in {result.out}"
    )
