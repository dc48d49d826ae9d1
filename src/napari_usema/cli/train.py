"""``usema train`` and ``usema finetune``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from napari_usema._help import help_text
from napari_usema.cli.progress import ProgressBar

BINARIZE_HELP = "semantic masks: read every non-zero id as class 1 (for binary masks stored as 0/255)"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a DIR/images + DIR/masks folder (works under torchrun)")
    p.add_argument("--data", required=True, type=Path, help="folder with images/ and masks/ (matched by file stem)")
    p.add_argument("--task", required=True, choices=["instance", "semantic"])
    p.add_argument("--preset", default="small", help="network preset: paper, paper-w32, small, tiny (default small)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.safetensors): the best on validation")
    p.add_argument("--in-channels", type=int, default=3, help="model input channels; grayscale images are repeated (default 3)")
    p.add_argument("--class-names", help="comma-separated class names for semantic tasks, background first")
    p.add_argument("--train-list", type=Path, help="file with the image names to train on (default: all not in --val-list)")
    p.add_argument("--val-list", type=Path, help="file with the image names to validate on")
    p.add_argument(
        "--input-scale",
        type=float,
        default=1.0,
        help="resize images by this factor before the network, in training and inference (0.5 for large objects; default 1)",
    )
    p.add_argument(
        "--invert-probability",
        type=float,
        default=0.0,
        help="augmentation: invert this fraction of patches, for models meant for bright and dark objects (default 0)",
    )
    p.add_argument(
        "--colour-jitter",
        type=float,
        default=0.0,
        help="augmentation: per-channel gain and offset of up to this much, for RGB data from several cameras (default 0)",
    )
    p.add_argument("--no-global-mean", action="store_true", help="ablation: window attention without the mean of V")
    p.add_argument("--binarize", action="store_true", help=BINARIZE_HELP)
    _add_schedule_options(p, defaults_from="train")
    p.add_argument("--resume", action="store_true", help="continue from OUT's .state.pt if present")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never the --init model)")
    p.add_argument("--init", help="start from this checkpoint's weights (same preset and channels), e.g. a bundled model")
    p.set_defaults(handler=run_train)

    f = sub.add_parser("finetune", help="fine-tune a checkpoint on corrected labels; writes a new checkpoint")
    f.add_argument("--model", required=True, help="parent checkpoint or bundled name (never modified)")
    f.add_argument("--image", nargs="+", required=True, type=Path, help="images")
    f.add_argument("--labels", nargs="+", required=True, type=Path, help="corrected labels, one per image, same order")
    f.add_argument("--region", nargs="+", type=Path, help="optional masks of the corrected regions, one per image")
    f.add_argument("--out", required=True, type=Path, help="new checkpoint (.safetensors); never the parent")
    f.add_argument("--channel", type=int, help="channel to use for multichannel images")
    f.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    f.add_argument("--binarize", action="store_true", help=BINARIZE_HELP)
    _add_schedule_options(f, defaults_from="finetune")
    f.set_defaults(handler=run_finetune)


def _add_schedule_options(p: argparse.ArgumentParser, defaults_from: str) -> None:
    from napari_usema.training.config import FINETUNE_DEFAULTS, TrainingConfig  # no torch: every usema call builds these

    d = FINETUNE_DEFAULTS if defaults_from == "finetune" else TrainingConfig()
    if defaults_from == "train":
        length = p.add_mutually_exclusive_group()
        length.add_argument("--steps", type=int, default=d.steps, help=help_text("steps", d.steps))
        length.add_argument(
            "--epochs",
            type=float,
            help="instead of --steps: passes over the training images, one patch from each image a pass",
        )
    else:
        p.add_argument("--steps", type=int, default=d.steps, help=help_text("steps", d.steps))
    p.add_argument("--patch", type=int, default=d.patch, help=f"patch side in pixels (default {d.patch})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"patches per step and process (default {d.batch})")
    p.add_argument("--lr", type=float, default=d.lr, help=help_text("lr", f"{d.lr:g}"))
    p.add_argument("--val-every", type=int, default=d.val_every, help=f"validate and save every N steps (default {d.val_every})")
    p.add_argument(
        "--minutes",
        type=float,
        help="also stop after this many minutes, validation included; the learning-rate cosine follows the clock "
        "(set --steps high to let the clock decide)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (under torchrun: each rank's own GPU)")


def _schedule(args: argparse.Namespace, base: object) -> object:
    return dataclasses.replace(
        base,
        steps=args.steps,
        patch=args.patch,
        batch=args.batch,
        lr=args.lr,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
        time_budget_s=None if args.minutes is None else _positive(args.minutes, "--minutes") * 60,
    )


def _lineage(provenance: dict) -> dict:
    """The parts of a parent's provenance worth carrying into its child's (not its whole history)."""
    keep = ("data", "preset", "steps", "val_metric", "init", "init_provenance", "parent")
    return {k: provenance[k] for k in keep if k in provenance}


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value:g}")
    return value


def run_train(args: argparse.Namespace) -> int:
    from napari_usema.inference.devices import select_device
    from napari_usema.inference.image_kind import training_image_kinds
    from napari_usema.io.bundled import resolve_model
    from napari_usema.io.images import find_pairs
    from napari_usema.io.metadata import INSTANCE_CLASSES, CheckpointMetadata, NormalizationRecipe
    from napari_usema.io.outputs import check_output
    from napari_usema.model import preset
    from napari_usema.training.data import AugmentConfig, load_folder, read_name_list, trained_diameter
    from napari_usema.training.distributed import init_world, shutdown
    from napari_usema.training.trainer import TrainingConfig, steps_for_epochs, train

    init_path = resolve_model(args.init) if args.init else None
    # Before any work: --out is a new .safetensors in a writable folder, never the model it starts from.
    check_output(
        args.out,
        overwrite=args.overwrite or args.resume,
        inputs=[init_path] if init_path else [],
        suffix=".safetensors",
        what="--out",
    )
    schedule = _schedule(args, TrainingConfig())  # its ranges are checked here, before the data is read
    select_device(args.device)  # an unknown or absent device is refused before any file is made
    augment = AugmentConfig(invert_probability=args.invert_probability, colour=args.colour_jitter)  # checked now
    if args.binarize and args.task != "semantic":
        raise ValueError("--binarize is for semantic masks (class ids); instance masks keep their ids")
    names = sorted(find_pairs(args.data))
    val = read_name_list(args.val_list) if args.val_list else []
    if args.val_list and not val:
        raise ValueError(
            f"--val-list {args.val_list} lists no names (one image name per line); leave it out to train without validation"
        )
    train_names = read_name_list(args.train_list) if args.train_list else [n for n in names if n not in set(val)]
    overlap = sorted(set(val) & set(train_names))
    if overlap:
        raise ValueError(f"{len(overlap)} images are in both the training and validation lists, e.g. {overlap[0]}")
    if args.task == "instance":
        class_names = INSTANCE_CLASSES
    elif args.class_names:
        class_names = tuple(name.strip() for name in args.class_names.split(","))
        if len(class_names) < 2 or not all(class_names):
            raise ValueError(
                f"--class-names needs the background and at least one class, e.g. background,polyp; got {args.class_names!r}"
            )
    else:
        raise ValueError("semantic training needs --class-names (e.g. background,polyp)")
    config = preset(args.preset, in_channels=args.in_channels, out_channels=len(class_names), global_mean=not args.no_global_mean)
    recipe = NormalizationRecipe()
    metadata = CheckpointMetadata(
        config,
        args.task,
        class_names,
        recipe,
        {"data": str(args.data), "train_names": len(train_names), "val_names": val, "preset": args.preset},
        input_scale=args.input_scale,
    )
    init_model = None
    if init_path is not None:
        from napari_usema.io.checkpoint import load_checkpoint

        init = load_checkpoint(init_path)
        if init.metadata.config != config:
            raise ValueError(f"--init {args.init} was built with another config than --preset {args.preset} and these options")
        init_model = init.model
        # The lineage: which weights this run started from, and how far they had been trained.
        metadata = metadata.with_provenance(init=str(args.init), init_provenance=_lineage(init.metadata.provenance))
    world = init_world(args.device)
    load = dict(
        task=args.task,
        in_channels=args.in_channels,
        recipe=recipe,
        scale=metadata.input_scale,
        classes=len(class_names),
        binarize=args.binarize,
    )
    train_samples = load_folder(args.data, train_names, **load)
    if not any(s.labels.any() for s in train_samples):
        raise ValueError(f"no training mask in {args.data / 'masks'} holds any object: there is nothing to learn")
    val_samples = load_folder(args.data, val, **load) if world.is_main else []
    # The size of the objects it learns, so that inference can resize other images to it (--diameter).
    metadata = dataclasses.replace(metadata, object_diameter=trained_diameter(train_samples, metadata))
    # The kinds of image it learns from: inference warns on an image of a kind it never saw.
    metadata = metadata.with_provenance(image_kinds=training_image_kinds(args.data, train_names))
    if args.epochs is not None:
        steps = steps_for_epochs(_positive(args.epochs, "--epochs"), len(train_samples), schedule.batch, world.size)
        schedule = dataclasses.replace(schedule, steps=steps)
    if args.invert_probability or args.colour_jitter:
        schedule = dataclasses.replace(schedule, augment=augment)
    log_path = args.out.with_name(args.out.name.removesuffix(".safetensors") + ".log.jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    bar = ProgressBar(schedule.steps, "train", enabled=world.is_main)
    try:
        with open(log_path, "a") if world.is_main else open("/dev/null", "w") as log:
            records = train(
                train_samples, val_samples, metadata, schedule, args.out, init_model=init_model, resume=args.resume, world=world
            )
            for record in records:
                bar.update(record.step, f"loss {record.loss:.3f}")
                if record.val_metric is not None or record.step % 10 == 0:
                    log.write(json.dumps(record.__dict__) + "\n")
                    log.flush()
                if record.val_metric is not None:
                    bar.note(f"step {record.step}: validation {record.val_metric:.4f} (best {record.best_metric:.4f})")
    finally:
        bar.close()
        shutdown(world)
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from napari_usema.io.bundled import resolve_model
    from napari_usema.io.checkpoint import load_checkpoint, read_metadata
    from napari_usema.io.images import read_image
    from napari_usema.training.finetune import FINETUNE_DEFAULTS, CorrectedPair, check_output, finetune

    if len(args.labels) != len(args.image):
        raise ValueError(f"{len(args.image)} images but {len(args.labels)} label files: give one labels file per image")
    if args.region and len(args.region) != len(args.image):
        raise ValueError(f"{len(args.image)} images but {len(args.region)} region masks")
    parent_path = resolve_model(args.model)
    check_output(parent_path, args.out, args.overwrite)
    if args.binarize and read_metadata(parent_path).task != "semantic":
        raise ValueError(f"--binarize is for semantic models; {args.model} is an instance model, whose masks keep their ids")
    schedule = _schedule(args, FINETUNE_DEFAULTS)  # its ranges are checked here, before any image is read
    parent = load_checkpoint(parent_path)
    regions = args.region or [None] * len(args.image)
    pairs = [
        CorrectedPair(read_image(i), read_image(lbl), None if r is None else read_image(r) > 0, i.stem)
        for i, lbl, r in zip(args.image, args.labels, regions, strict=True)
    ]
    bar = ProgressBar(schedule.steps, "finetune")
    try:
        records = finetune(
            parent, pairs, args.out, schedule, channel=args.channel, overwrite=args.overwrite, binarize=args.binarize
        )
        for record in records:
            bar.update(record.step, f"loss {record.loss:.3f}")
    finally:
        bar.close()
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
