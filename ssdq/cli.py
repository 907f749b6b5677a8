"""Command line: ``ssdq {data,convert,quantize,sensitivity,tune,eval,bench,prune,lowrank,study,compare,reproduce}``.

Threads are pinned before anything imports mxnet, so every stage module is imported inside its
handler. A ``SsdqError`` becomes one line on stderr and exit status 2; Ctrl-C exits 130.
"""
import argparse
import os
import sys

from .errors import SsdqError

DEFAULT_DATA_ROOT = os.path.join("data", "synthetic")


def _runtime_flags():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("threads")
    g.add_argument("--cores", help="CPU cores to pin to, e.g. 0-3,6 (default: one per physical core)")
    g.add_argument("--threads", type=int, help="OpenMP threads (default: one per pinned core)")
    g.add_argument("--gpus", default="", help="GPU ids; ssdq runs on CPU only, so leave empty")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _data_flags(split="val"):
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("data")
    g.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                   help="COCO- or VOC-format dataset folder (default: the embedded synthetic set)")
    g.add_argument("--dataset-format", default="auto", choices=("auto", "coco", "voc"))
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--num-workers", type=int, default=1, help="image decoding threads")
    return p


def _quant_flags():
    from .quantize import CALIB_MODES, DEFAULT_EXCLUDE_MATCH, DEFAULT_PERCENTILE

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("quantization")
    g.add_argument("--calib-mode", default="naive", choices=CALIB_MODES)
    g.add_argument("--num-calib-batches", type=int, default=5)
    g.add_argument("--calib-split", default="train", help="split to calibrate on (not the eval split)")
    g.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                   help="for --calib-mode percentile: the percentile of |x| kept (default 99.99)")
    g.add_argument("--exclude-match", nargs="*", default=list(DEFAULT_EXCLUDE_MATCH),
                   help="leave in fp32 every layer whose name contains one of these")
    return p


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ssdq", description="Reproduce Intel's int8 results for GluonCV SSD-VGG16 on Xeon CPUs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rt, data, quant = _runtime_flags(), _data_flags(), _quant_flags()

    p = sub.add_parser("data", help="make or fetch a dataset")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SOURCE")
    s = data_sub.add_parser("synthetic", help="generate the embedded COCO-format shapes dataset")
    s.add_argument("--root", default=DEFAULT_DATA_ROOT)
    s.add_argument("--train", type=int, default=None, help="train images (default 2500)")
    s.add_argument("--val", type=int, default=None, help="val images (default 500)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--quiet", action="store_true")
    c = data_sub.add_parser("coco", help="download COCO val2017 + annotations (resumable)")
    c.add_argument("--root", default=os.path.join("data", "coco"))
    c.add_argument("--base-url", default="http://images.cocodataset.org")
    c.add_argument("--quiet", action="store_true")

    p = sub.add_parser("convert", parents=[rt], help="Gluon SSD -> symbolic checkpoint")
    p.add_argument("--model", default="reference",
                   help="'reference' (embedded) or a gluoncv zoo name, e.g. ssd_300_vgg16_atrous_coco")
    p.add_argument("--params", help="weights file to load instead of the zoo's/reference's")
    p.add_argument("--out", "--model-prefix", dest="out", default=os.path.join("model", "converted"))

    p = sub.add_parser("quantize", parents=[rt, data, quant], help="calibrate and quantize to int8")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--out", default=os.path.join("model", "quantized"))
    p.add_argument("--exclude-layers", nargs="*", default=[],
                   help="layer names to keep in fp32 (fused or original conv names)")
    p.add_argument("--exclude-ops", nargs="*", default=[], help="operator types to keep in fp32")
    p.add_argument("--preset", choices=("first-last",),
                   help="first-last: keep the first and the prediction-head convolutions in fp32")
    p.add_argument("--recipe", help="rebuild the graph a `ssdq tune` recipe describes (no calibration)")

    for name, text in (("sensitivity", "rank layers by how much int8 costs them"),
                       ("tune", "find the fewest fp32 layers that meet an mAP budget")):
        p = sub.add_parser(name, parents=[rt, data, quant], help=text)
        p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
        p.add_argument("--split", default="val")
        p.add_argument("--eval-images", type=int, default=None,
                       help="score on the first N images of the split (default: all)")
        p.add_argument("--out-dir", default="reports")
    p.add_argument("--max-relative-drop", type=float, default=0.5,
                   help="budget: int8 mAP within this many percent (relative) of fp32")
    p.add_argument("--max-trials", type=int, default=40)
    p.add_argument("--time-limit", type=float, default=1800, help="seconds")
    p.add_argument("--out", default=os.path.join("model", "tuned"))
    sub.choices["sensitivity"].add_argument("--no-map", action="store_true",
                                            help="only the label-free SNR proxy (fast)")

    p = sub.add_parser("eval", parents=[rt, data], help="evaluate a checkpoint")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--split", default="val")
    p.add_argument("--out", help="also write the result as JSON here")

    from .bench import DEFAULT_BATCH_SIZES, PRECISIONS, SCOPES

    p = sub.add_parser("bench", parents=[rt],
                       help="img/s by precision, scope and batch size -> reports/bench.{json,md,png}")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--int8-prefix", default=os.path.join("model", "quantized"))
    p.add_argument("--zoo", nargs="?", const="ssd_300_vgg16_atrous_coco", metavar="NAME",
                   help="bench this gluoncv zoo architecture (default ssd_300_vgg16_atrous_coco) "
                        "with random weights instead of the checkpoints; no download")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--scopes", nargs="+", default=list(SCOPES), choices=SCOPES)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=list(DEFAULT_BATCH_SIZES))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--eval-images", type=int, default=64, help="images per eval_loop pass")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="images to run (default: the "
                   "embedded synthetic set)")
    p.add_argument("--split", default="val")
    p.add_argument("--num-workers", type=int, default=1, help="image decoding threads")
    p.add_argument("--widths-from", metavar="CHECKPOINT",
                   help="with --zoo: also bench the architecture at this pruned checkpoint's "
                        "per-layer keep ratios (random weights), timed in turns with the dense one")
    p.add_argument("--profile", action="store_true",
                   help="also profile each graph per operator (MXNet profiler) at the batch "
                        "nearest 8: where the time goes, in bench.json and bench.md")
    p.add_argument("--out", default=os.path.join("reports", "bench.json"))

    _prune_parsers(sub, rt, data, quant)

    p = sub.add_parser("compare", help="CI gate: fail if a report regressed against a baseline")
    p.add_argument("report", help="the new report.json or bench.json")
    p.add_argument("--baseline", help="the report.json to compare against")
    p.add_argument("--max-map-drop", type=float, default=0.5, help="points of mAP")
    p.add_argument("--min-speedup", type=float,
                   help="minimum end-to-end int8/fp32 images/s ratio (measured within the new run)")
    p.add_argument("--min-network-speedup", type=float,
                   help="minimum network-only int8/fp32 ratio (needs a bench in the file)")

    p = sub.add_parser("reproduce", parents=[rt, data, quant],
                       help="convert, quantize, evaluate fp32 and int8, write the report")
    p.add_argument("--model", default="reference")
    p.add_argument("--params")
    p.add_argument("--split", default="val")
    p.add_argument("--model-dir", default="model")
    p.add_argument("--out-dir", default="reports")
    return parser


def _prune_parsers(sub, rt, data, quant):
    """``ssdq prune``, ``ssdq lowrank`` and ``ssdq study prune``."""
    from .compress.pruning import MODES, SPARSE_WEIGHTS
    from .compress.study_prune import DEFAULT_ENERGY, DEFAULT_PERCENT, DEFAULT_RECALIBRATE_IMAGES

    p = sub.add_parser("prune", parents=[rt], help="channel pruning by BatchNorm gammas (network "
                       "slimming) -> a BN-folded checkpoint with fewer channels")
    p.add_argument("--params", default=SPARSE_WEIGHTS, help="reference-model weights to prune "
                   "(default: the committed sparse-trained ones)")
    p.add_argument("--percent", type=float, default=DEFAULT_PERCENT,
                   help="share of all prunable gammas under the global threshold")
    p.add_argument("--mode", default="normal", choices=MODES)
    p.add_argument("--recalibrate-images", type=int, default=DEFAULT_RECALIBRATE_IMAGES,
                   help="re-estimate BatchNorm statistics on this many train images (0: no)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    p.add_argument("--out", default=os.path.join("model", "pruned"))

    p = sub.add_parser("lowrank", parents=[rt], help="truncated SVD of fc6/fc7 in a checkpoint")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--layers", nargs="+", default=["fc7", "fc6"], help="fc6, fc7 or node names")
    rank = p.add_mutually_exclusive_group(required=True)
    rank.add_argument("--rank", type=int)
    rank.add_argument("--energy", type=float, help="keep this share of the singular-value energy")
    p.add_argument("--out", default=os.path.join("model", "lowrank"))

    study = sub.choices.get("study") or sub.add_parser(
        "study", help="compression studies -> reports/study-KIND.{json,md,png}")
    kinds = study._subparsers._group_actions[0] if study._subparsers else study.add_subparsers(
        dest="study", required=True, metavar="KIND")  # pylint: disable=protected-access
    p = kinds.add_parser("prune", parents=[rt, data, quant],
                         help="pruning + low-rank + W8A8 table of the reference work")
    p.add_argument("--percent", type=float, default=DEFAULT_PERCENT)
    p.add_argument("--energy", type=float, default=DEFAULT_ENERGY, help="low-rank rows")
    p.add_argument("--params", help="dense weights (default: the reference model's)")
    p.add_argument("--sparse-params", default=SPARSE_WEIGHTS)
    p.add_argument("--split", default="val")
    p.add_argument("--eval-images", type=int, help="score on the first N images (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure")
    p.add_argument("--recalibrate-images", type=int, default=DEFAULT_RECALIBRATE_IMAGES,
                   help="pruned rows: re-estimate BatchNorm statistics on this many train images")
    p.add_argument("--model-dir", default=os.path.join("model", "study-prune"))
    p.add_argument("--out-dir", default="reports")


def _prune_commands(args, progress):
    if args.command == "prune":
        from .compress.pruning import prune

        from .data.dataset import open_dataset

        calib_set = open_dataset(args.data_root, "train") if args.recalibrate_images else None
        prefix, recipe = prune(args.out, args.params, args.percent, args.mode, calib_set,
                               args.recalibrate_images)
        print("kept %d of %d prunable channels, %d scales, conv layers %+d; wrote %s" % (
            recipe["channels"]["after"], recipe["channels"]["before"], recipe["num_scales"],
            recipe["conv_layers"]["delta"], prefix))
    elif args.command == "lowrank":
        from .compress.lowrank import lowrank

        prefix, summary = lowrank(args.model_prefix, args.out, args.layers, args.rank, args.energy)
        for layer, s in summary.items():
            print("%s: rank %d of %d, energy %.4f, params %d -> %d" % (
                layer, s["rank"], s["full_rank"], s["energy_kept"], s["params_before"],
                s["params_after"]))
        print("wrote %s" % prefix)
    else:
        from .compress.study_prune import run_study

        run_study(args.data_root, args.split, args.calib_split, args.percent, args.energy,
                  args.params, args.sparse_params, args.model_dir, args.out_dir,
                  args.eval_images, args.num_calib_batches, args.batch_size, args.calib_mode,
                  args.num_workers, args.repeats, progress,
                  recalibrate_images=args.recalibrate_images)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except SsdqError as exc:
        print("ssdq: error: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssdq: interrupted", file=sys.stderr)
        return 130


def _run(args):
    from . import cpus, environment

    environment.check_numpy()
    if getattr(args, "gpus", ""):
        raise SsdqError("GPU context requested (--gpus %s), but ssdq runs on CPU only: its "
                        "MXNet build has no CUDA; drop --gpus" % args.gpus)
    if args.command == "data":
        return _data(args)
    if args.command == "compare":
        from .compare import compare

        ok, lines = compare(args.report, args.baseline, args.max_map_drop, args.min_speedup,
                            args.min_network_speedup)
        print("\n".join(lines))
        return 0 if ok else 1
    for flag in ("batch_size", "num_workers", "num_calib_batches"):
        if getattr(args, flag, 1) < 1:
            raise SsdqError("--%s must be at least 1" % flag.replace("_", "-"))
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    threads = cpus.pin_threads(args.cores, args.threads)
    progress = not args.quiet
    if args.command == "convert":
        from .convert import convert

        print("wrote %s" % convert(args.out, model=args.model, params_file=args.params))
    elif args.command == "quantize" and args.recipe:
        from .quantize import quantize_from_recipe

        print("wrote %s" % quantize_from_recipe(args.model_prefix, args.out, args.recipe))
    elif args.command == "quantize":
        from .data.dataset import open_dataset
        from .quantize import quantize

        calib_set = open_dataset(args.data_root, args.calib_split, args.dataset_format)
        quantize(args.model_prefix, args.out, calib_set, calib_mode=args.calib_mode,
                 num_calib_batches=args.num_calib_batches, batch_size=args.batch_size,
                 exclude_layers=args.exclude_layers, exclude_match=args.exclude_match,
                 exclude_ops=args.exclude_ops, percentile=args.percentile, preset=args.preset,
                 num_workers=args.num_workers, progress=progress)
        print("wrote %s" % args.out)
    elif args.command in ("sensitivity", "tune"):
        _accuracy_tools(args, progress)
    elif args.command == "eval":
        from .checkpoint import load_checkpoint, resolve_prefix
        from .data.dataset import open_dataset
        from .evaluate import evaluate_checkpoint, format_result
        from .fileio import write_json

        prefix = resolve_prefix(args.model_prefix)
        classes = load_checkpoint(prefix).classes if args.dataset_format != "coco" else None
        dataset = open_dataset(args.data_root, args.split, args.dataset_format, classes=classes)
        result = evaluate_checkpoint(prefix, dataset, args.batch_size, args.num_workers, progress)
        print(format_result(result))
        if args.out:
            write_json(args.out, dict(result, threads=threads))
    elif args.command == "bench":
        _bench(args, progress)
    elif args.command in ("prune", "lowrank") or getattr(args, "study", None) == "prune":
        _prune_commands(args, progress)
    elif args.command == "reproduce":
        from .reproduce import reproduce

        reproduce(model=args.model, params_file=args.params, data_root=args.data_root,
                  eval_split=args.split, calib_split=args.calib_split,
                  calib_mode=args.calib_mode, num_calib_batches=args.num_calib_batches,
                  batch_size=args.batch_size, num_workers=args.num_workers,
                  exclude_match=args.exclude_match, model_dir=args.model_dir,
                  out_dir=args.out_dir, threads=threads, progress=progress)
    return 0


def _accuracy_tools(args, progress):
    from .checkpoint import resolve_prefix
    from .data.dataset import open_dataset
    from .fileio import write_json, write_text
    from .sensitivity import Int8Variants

    eval_set = open_dataset(args.data_root, args.split, args.dataset_format)
    if args.eval_images:
        eval_set = eval_set.subset(args.eval_images)
    variants = Int8Variants(resolve_prefix(args.model_prefix),
                            open_dataset(args.data_root, args.calib_split, args.dataset_format),
                            eval_set, num_calib_batches=args.num_calib_batches,
                            batch_size=args.batch_size, exclude_match=args.exclude_match,
                            num_workers=args.num_workers, progress=progress)
    out = args.out_dir
    if args.command == "sensitivity":
        from .sensitivity import analyse, markdown_table, plot

        report = analyse(variants, args.calib_mode, with_map=not args.no_map, progress=progress)
        write_json(os.path.join(out, "sensitivity.json"), report)
        table = markdown_table(report)
        write_text(os.path.join(out, "sensitivity.md"), "# int8 sensitivity per layer\n\n"
                   "fp32 mAP %s, all-int8 mAP %s (%s calibration)\n\n%s\n" % (
                       _maybe(report["fp32_map"]), _maybe(report["int8_map"]),
                       report["calib_mode"], table))
        plot(report, os.path.join(out, "sensitivity.png"))
        print(markdown_table(report, top=10))
        print("wrote %s/sensitivity.{json,md,png}" % out)
        return
    from .tune import calibration_markdown, tune, tune_markdown

    report = tune(variants, args.out, args.max_relative_drop, max_trials=args.max_trials,
                  time_limit_s=args.time_limit, progress=progress)
    write_json(os.path.join(out, "tune.json"), report)
    write_text(os.path.join(out, "tune.md"), tune_markdown(report))
    write_json(os.path.join(out, "calibration.json"),
               {"fp32_map": report["fp32"]["map"], "methods": report["calibration_methods"],
                "eval_images": report["eval_images"]})
    write_text(os.path.join(out, "calibration.md"), "# Calibration methods\n\n%s\n"
               % calibration_markdown(report))
    print(tune_markdown(report))
    print("wrote %s, %s/tune.{json,md}, %s/calibration.{json,md}" % (args.out, out, out))


def _bench(args, progress):
    from .bench import benchmark, markdown, write_bench, zoo_checkpoints
    from .data.dataset import open_dataset
    from .data.synthetic import ensure_synthetic

    if os.path.normpath(args.data_root) == os.path.normpath(DEFAULT_DATA_ROOT):
        ensure_synthetic(args.data_root, progress=progress)
    image_set = open_dataset(args.data_root, args.split)
    pruned = None
    if args.widths_from and not args.zoo:
        raise SsdqError("--widths-from needs --zoo (it shapes the zoo architecture)")
    if args.zoo:
        pairs = [zoo_checkpoints(args.zoo, image_set, progress=progress)]
        if args.widths_from:
            pruned = zoo_checkpoints(args.zoo, image_set, progress=progress,
                                     widths_from=args.widths_from)
    else:
        pairs = [(args.model_prefix, args.int8_prefix)]
    bench = benchmark(pairs, image_set, args.precisions, args.scopes, args.batch_sizes,
                      args.warmup, args.repeats, args.eval_images, args.num_workers, progress,
                      profile=args.profile, pruned=pruned)
    paths = write_bench(bench, args.out)
    print(markdown(bench))
    print("wrote %s" % ", ".join(paths))


def _maybe(value, fmt="%.2f"):
    return "n/a (--no-map)" if value is None else fmt % value


def _data(args):
    if args.data_command == "synthetic":
        from .data import synthetic

        splits = dict(synthetic.DEFAULT_SPLITS)
        if args.train is not None:
            splits["train"] = args.train
        if args.val is not None:
            splits["val"] = args.val
        if any(n < 1 for n in splits.values()):
            raise SsdqError("each split needs at least one image")
        seed = synthetic.DEFAULT_SEED if args.seed is None else args.seed
        paths = synthetic.ensure_synthetic(args.root, splits, seed=seed, progress=not args.quiet)
        for split, path in paths.items():
            print("%s: %s" % (split, path))
    else:
        from .data.coco import download_coco

        print("COCO val2017 ready in %s" % download_coco(args.root, base_url=args.base_url,
                                                        progress=not args.quiet))
    return 0
