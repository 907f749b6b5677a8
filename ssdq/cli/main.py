"""Command line: ``ssdq {data,convert,quantize,sensitivity,tune,eval,bench,compare,finetune,study,
prune,lowrank,reproduce,export}``.

Threads are pinned before anything imports mxnet, so every stage module is imported inside its
handler. A ``SsdqError`` becomes one line on stderr and exit status 2; Ctrl-C exits 130.
"""
import argparse
import json
import os
import sys
import warnings

from ssdq.errors import SsdqError

DEFAULT_DATA_ROOT = os.path.join("data", "synthetic")


def _runtime_flags():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("threads")
    g.add_argument("--cores", help="CPU cores to pin to, e.g. 0-3,6 (default: one per physical core)")
    g.add_argument("--threads", type=int, help="OpenMP threads (default: one per pinned core)")
    g.add_argument("--numa-node", metavar="N|all",
                   help="pin to this NUMA node's physical cores, or all nodes' (default: the node "
                        "of --cores, else one node unless --threads needs more)")
    g.add_argument("--membind", default="bind", choices=("bind", "preferred", "none"),
                   help="memory policy for the pinned nodes, via set_mempolicy (default bind)")
    g.add_argument("--strict", action="store_true",
                   help="fail if the kernel refuses the memory policy (default: warn, go on)")
    g.add_argument("--gpus", default="", help="GPU ids; ssdq runs on CPU only, so leave empty")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _data_flags(split="val"):
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("data")
    g.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                   help="COCO- or VOC-format dataset folder (default: the embedded synthetic set)")
    g.add_argument("--dataset-format", default="auto", choices=("auto", "coco", "voc"))
    g.add_argument("--annotations", metavar="FILE",
                   help="a COCO instances file anywhere (labelme's annotations.json, ...): use it "
                        "instead of --data-root/--split")
    g.add_argument("--images", metavar="DIR", help="the folder the COCO file's file_name entries "
                   "are relative to (default: the file's folder)")
    g.add_argument("--class-map", metavar="FILE", help="JSON object renaming dataset classes to "
                   "the model's, e.g. {\"potted plant\": \"pottedplant\"}")
    g.add_argument("--allow-size-mismatch", action="store_true",
                   help="an image whose decoded size differs from its annotation's width/height "
                        "is a warning (the decoded size is used), not an error")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--num-workers", type=int, default=1, help="image decoding threads")
    return p


def _scaleout_flags():
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("scale-out (Ray)")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run trials as Ray tasks: alone, a Ray started on this machine; with an "
                        "address (auto, HOST:PORT), a cluster started with `ray start`")
    g.add_argument("--cpus-per-task", type=int, default=1,
                   help="CPUs (pinned cores and OpenMP threads) each Ray task gets (default 1)")
    return p


def _engine(args):
    from ssdq.scaleout.engine import make_engine

    return make_engine(args.ray, args.cpus_per_task)


def _quant_flags():
    from ssdq.quant.quantize import CALIB_MODES, DEFAULT_EXCLUDE_MATCH, DEFAULT_PERCENTILE

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("quantization")
    g.add_argument("--calib-mode", default="naive", choices=CALIB_MODES)
    g.add_argument("--num-calib-batches", type=int, default=5)
    g.add_argument("--calib-split", default="train", help="split to calibrate on (not the eval split)")
    g.add_argument("--calib-annotations", metavar="FILE",
                   help="calibrate on this COCO file's images (default: --annotations' if given)")
    g.add_argument("--calib-images", metavar="DIR", help="the folder of --calib-annotations' images")
    g.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                   help="for --calib-mode percentile: the percentile of |x| kept (default 99.99)")
    g.add_argument("--exclude-match", nargs="*", default=list(DEFAULT_EXCLUDE_MATCH),
                   help="leave in fp32 every layer whose name contains one of these")
    return p


def _checkpoint_flags(params=False):
    """For checkpoints ssdq did not write (no PREFIX-meta.json): see checkpoint_meta.py."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("checkpoints without a -meta.json")
    g.add_argument("--classes", metavar="coco|voc|FILE",
                   help="class names of a plain MXNet checkpoint: GluonCV's COCO or VOC list, "
                        "or a file with one name per line")
    if params:
        g.add_argument("--params", metavar="FILE",
                       help="weights for a symbol-only graph (GluonCV's shipped "
                            "*_int8-symbol.json binds to its fp32 model's exported params)")
    return p


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ssdq", description="Reproduce Intel's int8 results for GluonCV SSD-VGG16 on Xeon CPUs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rt, data, quant = _runtime_flags(), _data_flags(), _quant_flags()
    plain, plain_params = _checkpoint_flags(), _checkpoint_flags(params=True)
    scaleout = _scaleout_flags()

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

    p = sub.add_parser("quantize", parents=[rt, data, quant, plain],
                       help="calibrate and quantize to int8")
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
        p = sub.add_parser(name, parents=[rt, data, quant, plain, scaleout], help=text)
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

    from ssdq.backends import BACKENDS

    p = sub.add_parser("eval", parents=[rt, data, plain_params, scaleout],
                       help="evaluate a checkpoint")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--backend", default="mxnet", choices=BACKENDS,
                   help="runtime to evaluate on (onnxruntime/openvino run `ssdq export onnx`'s "
                        "model of the checkpoint; needs the runtimes extra)")
    p.add_argument("--split", default="val")
    p.add_argument("--shards", type=int, default=1,
                   help="split the images into N shards (Ray tasks with --ray), merge, score once")
    p.add_argument("--out", help="also write the result as JSON here")

    from ssdq.bench.harness import DEFAULT_BATCH_SIZES, PRECISIONS, SCOPES

    p = sub.add_parser("bench", parents=[rt, plain_params],
                       help="img/s by precision, scope and batch size -> reports/bench.{json,md,png}")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--int8-prefix", default=os.path.join("model", "quantized"))
    p.add_argument("--zoo", nargs="?", const="ssd_300_vgg16_atrous_coco", metavar="NAME",
                   help="bench this gluoncv zoo architecture (default ssd_300_vgg16_atrous_coco) "
                        "with random weights instead of the checkpoints; no download")
    p.add_argument("--backends", nargs="+", default=["mxnet"], choices=BACKENDS,
                   help="runtimes timed side by side (default mxnet)")
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
    p.add_argument("--extra-int8", nargs="+", default=[], metavar="LABEL=PREFIX",
                   help="more int8 graphs of the same fp32 weights, timed in turns with the "
                        "others as precision int8_LABEL, e.g. gluoncv=ssd_300_vgg16_atrous_voc_int8 "
                        "(GluonCV's shipped graph; binds to --params, else to the fp32 weights)")
    p.add_argument("--widths-from", metavar="CHECKPOINT",
                   help="with --zoo: also bench the architecture at this pruned checkpoint's "
                        "per-layer keep ratios (random weights), timed in turns with the dense one")
    p.add_argument("--widths-multiple", type=int, default=1, metavar="K",
                   help="with --widths-from: round each width up to a multiple of K channels "
                        "(16 fills AVX-512 int8 registers; default 1: the keep ratios as they are)")
    p.add_argument("--profile", action="store_true",
                   help="also profile each graph per operator (MXNet profiler) at the batch "
                        "nearest 8: where the time goes, in bench.json and bench.md")
    p.add_argument("--out", default=os.path.join("reports", "bench.json"))
    g = p.add_argument_group("multi-instance (as Intel's launchers run CI; see README)")
    g.add_argument("--instances", type=int, help="run N instances together, each on its own cores")
    g.add_argument("--cores-per-instance", type=int, help="physical cores of each instance")
    g.add_argument("--mode", choices=("latency", "throughput"),
                   help="latency: 4 cores an instance within one node; throughput: one per node")
    g.add_argument("--instance-cores", nargs="+", metavar="CPUS",
                   help="explicit cores of each instance, e.g. 0-3 4-7")
    g.add_argument("--rounds", type=int, default=1,
                   help="times to run (one instance on all the cores, then the N) in turns")

    p = sub.add_parser("compare", help="CI gate: fail if a report regressed against a baseline")
    p.add_argument("report", help="the new report.json or bench.json")
    p.add_argument("--baseline", help="the report.json to compare against")
    p.add_argument("--max-map-drop", type=float, default=0.5, help="points of mAP")
    p.add_argument("--min-speedup", type=float,
                   help="minimum end-to-end int8/fp32 images/s ratio (measured within the new run)")
    p.add_argument("--min-network-speedup", type=float,
                   help="minimum network-only int8/fp32 ratio (needs a bench in the file)")
    p.add_argument("--min-throughput", type=float,
                   help="multi-instance bench: minimum total img/s (all images / common wall time)")

    kinds = _compress_parsers(sub, rt, data, quant, scaleout)
    _prune_parsers(sub, kinds, rt, data, quant, scaleout)

    p = sub.add_parser("reproduce", parents=[rt, data, quant],
                       help="convert, quantize, evaluate fp32 and int8, write the report")
    p.add_argument("--model", default="reference")
    p.add_argument("--params")
    p.add_argument("--split", default="val")
    p.add_argument("--model-dir", default="model")
    p.add_argument("--out-dir", default="reports")
    p.add_argument("--backends", nargs="+", default=[], choices=BACKENDS,
                   help="also evaluate and time fp32 and int8 on these runtimes (report.json "
                        "backends.NAME)")

    p = sub.add_parser("export", help="a checkpoint in another runtime's format")
    export_sub = p.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    e = export_sub.add_parser("onnx", parents=[rt], help="fp32, or int8 as a QDQ model with "
                              "ssdq's calibration (PREFIX-calib.json)")
    e.add_argument("--model-prefix", default=os.path.join("model", "quantized"))
    e.add_argument("--out", help="ONNX file (default: PREFIX.onnx)")
    e.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel (MXNet's "
                        "oneDNN convolution uses per-channel weight scales)")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from ssdq.errors import SsdqNote, SsdqWarning

    if issubclass(category, SsdqWarning):
        kind = "note" if issubclass(category, SsdqNote) else "warning"
        print("ssdq: %s: %s" % (kind, message), file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def _compress_parsers(sub, rt, data, quant, scaleout):
    """``ssdq finetune`` and ``ssdq study KIND`` (one sub-parser per study; add a study in a line)."""
    from ssdq.compress.formats.finetune import FINETUNE_LR

    p = sub.add_parser("finetune", parents=[rt, data],
                       help="fine-tune with a weight number format in the loop (simulated)")
    p.add_argument("--format", required=True, dest="number_format",
                   help="dfp:BITS, int:BITS, pow2:LO:HI, pow2clip:BITS[:J], clip:J")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lq-lambda", type=float, default=0.0, help="weight of lambda*sum((w-C(w))^2)")
    p.add_argument("--train-images", type=int, help="first N train images (default: all)")
    p.add_argument("--val-images", type=int, default=500, help="val images scored per epoch")
    p.add_argument("--lr", type=float, default=FINETUNE_LR, help="Adam, cosine decay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", nargs="+", default=["all"],
                   help="groups (all conv fc heads first last), names or regexes")
    p.add_argument("--fc-layers", nargs="*", default=[], help="convolutions to treat as FC (fc6 fc7)")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--out", help="checkpoint prefix (default model/finetuned-FORMAT[-lqL])")
    p.add_argument("--train-batch-size", type=int, default=16)

    study = sub.add_parser("study", help="compression studies (low-bit formats simulated, pruning "
                           "with real int8) -> reports/study-KIND.{json,md,png}")
    kinds = study.add_subparsers(dest="study", required=True, metavar="KIND")
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("study")
    g.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    g.add_argument("--split", default="val")
    g.add_argument("--eval-images", type=int, help="score on the first N images (default: all)")
    g.add_argument("--out-dir", default="reports")
    g.add_argument("--fc-layers", nargs="*", default=[], help="convolutions to treat as FC (fc6 fc7)")
    g.add_argument("--train-images", type=int, help="fine-tuning: first N train images")
    g.add_argument("--model-dir", default="model", help="where fine-tuned checkpoints are cached")
    parents = [rt, data, quant, common, scaleout]
    p = kinds.add_parser("bitwidth", parents=parents, help="Ristretto's dynamic fixed point analysis")
    p.add_argument("--error-margin", type=float, default=2.0, help="points of mAP")
    p.add_argument("--bits", nargs="+", type=int, default=[16, 8, 4, 2, 1])
    p = kinds.add_parser("pow2", parents=parents, help="power-of-two (DeepShift) weights")
    p.add_argument("--formats", nargs="+", default=["pow2:-15:0", "pow2:-10:5", "pow2:-8:0"],
                   help="power-of-two weight formats (exponent ranges) to compare")
    p.add_argument("--activation-format", default="dfp:8", help="activation rounding of the rows with it")
    p.add_argument("--finetune-format", default="pow2:-10:5")
    p = kinds.add_parser("clip", parents=parents, help="power-of-two clipping, int8 inside the clips")
    p.add_argument("--lq-lambda", type=float, default=1e-3)
    p.add_argument("--error-margin", type=float, default=0.5,
                   help="points of mAP a clip may cost to be chosen")
    for kind, epochs in (("bitwidth", 0), ("pow2", 3), ("clip", 1)):
        kinds.choices[kind].add_argument(
            "--finetune-epochs", type=int, default=epochs,
            help="fine-tune the failing format this many epochs (default %d)" % epochs)
    return kinds


def _prune_parsers(sub, kinds, rt, data, quant, scaleout):
    """``ssdq prune``, ``ssdq lowrank`` and ``ssdq study prune``."""
    from ssdq.compress.formats.finetune import FINETUNE_LR
    from ssdq.compress.pruning.slimming import CRITERIA, MODES, SPARSE_WEIGHTS
    from ssdq.compress.pruning.study import (DEFAULT_ENERGY, DEFAULT_FINETUNE_CRITERION, DEFAULT_FINETUNE_EPOCHS, DEFAULT_FINETUNE_MIN_KEEP, DEFAULT_FINETUNE_PARAMS_SHARE, DEFAULT_PERCENT, DEFAULT_RECALIBRATE_IMAGES)

    p = sub.add_parser("prune", parents=[rt], help="channel pruning by BatchNorm gammas (network "
                       "slimming) -> a BN-folded checkpoint with fewer channels")
    p.add_argument("--params", default=SPARSE_WEIGHTS, help="reference-model weights to prune "
                   "(default: the committed sparse-trained ones)")
    p.add_argument("--percent", type=float, default=DEFAULT_PERCENT,
                   help="share of all prunable gammas under the global threshold")
    p.add_argument("--params-share", type=float,
                   help="instead of --percent: prune the fewest channels that leave at most this "
                   "share of the parameters (e.g. 0.25)")
    p.add_argument("--mode", default="normal", choices=MODES)
    p.add_argument("--criterion", default="gamma", choices=CRITERIA,
                   help="gamma: network slimming's |gamma|; gamma-per-param: |gamma| per "
                   "parameter the channel costs (cuts expensive channels first)")
    p.add_argument("--min-keep", type=float, default=0.0,
                   help="every layer keeps at least this share of its channels (default: one)")
    p.add_argument("--recalibrate-images", type=int, default=DEFAULT_RECALIBRATE_IMAGES,
                   help="re-estimate BatchNorm statistics on this many train images (0: no)")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="train the pruned network this many epochs on the train split (Adam, "
                   "cosine decay) before BatchNorm folding (default 0: none, as the reference)")
    p.add_argument("--finetune-lr", type=float, default=FINETUNE_LR)
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    p.add_argument("--out", default=os.path.join("model", "pruned"))

    p = sub.add_parser("lowrank", parents=[rt], help="truncated SVD of fc6/fc7 in a checkpoint")
    p.add_argument("--model-prefix", default=os.path.join("model", "converted"))
    p.add_argument("--layers", nargs="+", default=["fc7", "fc6"], help="fc6, fc7 or node names")
    rank = p.add_mutually_exclusive_group(required=True)
    rank.add_argument("--rank", type=int)
    rank.add_argument("--energy", type=float, help="keep this share of the singular-value energy")
    p.add_argument("--out", default=os.path.join("model", "lowrank"))

    p = kinds.add_parser("prune", parents=[rt, data, quant, scaleout],
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
    p.add_argument("--finetune-params-share", type=float, default=DEFAULT_FINETUNE_PARAMS_SHARE,
                   help="the fine-tuned row: prune to this share of the parameters (max mode), "
                   "then fine-tune")
    p.add_argument("--finetune-percent", type=float,
                   help="the fine-tuned row: prune this share of the channels instead")
    p.add_argument("--finetune-criterion", default=DEFAULT_FINETUNE_CRITERION, choices=CRITERIA)
    p.add_argument("--finetune-min-keep", type=float, default=DEFAULT_FINETUNE_MIN_KEEP,
                   help="the fine-tuned row: every layer keeps at least this share of its channels")
    p.add_argument("--finetune-epochs", type=int, default=DEFAULT_FINETUNE_EPOCHS,
                   help="the fine-tuned row's epochs on the train split (0: leave the row out)")
    p.add_argument("--model-dir", default=os.path.join("model", "study-prune"))
    p.add_argument("--out-dir", default="reports")


def _prune_commands(args, progress):
    if args.command == "prune":
        from ssdq.compress.pruning.slimming import check_settings, prune
        from ssdq.data.dataset import open_dataset

        check_settings(args.percent, args.mode, args.criterion, args.params_share, args.min_keep)
        if args.finetune_epochs < 0:
            raise SsdqError("--finetune-epochs must be 0 or more")
        train_set = (open_dataset(_data_root(args), "train")
                     if args.recalibrate_images or args.finetune_epochs else None)
        prefix, recipe = prune(args.out, args.params, args.percent, args.mode, train_set,
                               args.recalibrate_images, finetune_epochs=args.finetune_epochs,
                               train_set=train_set, finetune_lr=args.finetune_lr,
                               progress=progress, criterion=args.criterion,
                               min_keep=args.min_keep, params_share=args.params_share)
        print("kept %d of %d prunable channels (%.1f%% pruned), %d scales, conv layers %+d; "
              "wrote %s" % (recipe["channels"]["after"], recipe["channels"]["before"],
                            recipe["percent"], recipe["num_scales"],
                            recipe["conv_layers"]["delta"], prefix))
    elif args.command == "lowrank":
        from ssdq.compress.pruning.lowrank import lowrank

        prefix, summary = lowrank(args.model_prefix, args.out, args.layers, args.rank, args.energy)
        for layer, s in summary.items():
            print("%s: rank %d of %d, energy %.4f, params %d -> %d" % (
                layer, s["rank"], s["full_rank"], s["energy_kept"], s["params_before"],
                s["params_after"]))
        print("wrote %s" % prefix)
    else:
        from ssdq.compress.pruning.study import run_study

        data_root = _data_root(args)
        engine = _engine(args)
        try:
            from ssdq.compress.pruning.study import finetune_pruning_settings

            run_study(data_root, args.split, args.calib_split, args.percent, args.energy,
                      args.params, args.sparse_params, args.model_dir, args.out_dir,
                      args.eval_images, args.num_calib_batches, args.batch_size,
                      args.calib_mode, args.num_workers, args.repeats, progress,
                      recalibrate_images=args.recalibrate_images,
                      finetune_epochs=args.finetune_epochs, engine=engine,
                      finetune_pruning=finetune_pruning_settings(
                          args.finetune_percent, args.finetune_params_share,
                          args.finetune_criterion, args.finetune_min_keep))
        finally:
            engine.close()


def main(argv=None):
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    # gluoncv registers an initializer per anchor constant under a name built from the block's
    # name; the second SSD built in one process (pruning, studies) re-registers it, harmlessly
    warnings.filterwarnings("ignore", message=".*New initializer .* registered",
                            category=UserWarning)
    try:
        return _run(args)
    except SsdqError as exc:
        print("ssdq: error: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssdq: interrupted", file=sys.stderr)
        return 130


def _run(args):
    from ssdq.host import cpus, environment

    environment.check_numpy()
    if getattr(args, "gpus", ""):
        raise SsdqError("GPU context requested (--gpus %s), but ssdq runs on CPU only: its "
                        "MXNet build has no CUDA; drop --gpus" % args.gpus)
    if args.command == "data":
        return _data(args)
    if args.command == "compare":
        from ssdq.report.compare import compare

        ok, lines = compare(args.report, args.baseline, args.max_map_drop, args.min_speedup,
                            args.min_network_speedup, args.min_throughput)
        print("\n".join(lines))
        return 0 if ok else 1
    for flag in ("batch_size", "num_workers", "num_calib_batches"):
        if getattr(args, flag, 1) < 1:
            raise SsdqError("--%s must be at least 1" % flag.replace("_", "-"))
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    threads = cpus.pin_threads(args.cores, args.threads, args.numa_node, args.membind,
                               args.strict)
    progress = _show_progress(args)
    if args.command == "convert":
        from ssdq.model.convert import convert

        print("wrote %s" % convert(args.out, model=args.model, params_file=args.params))
    elif args.command == "quantize" and args.recipe:
        from ssdq.model.checkpoint import load_checkpoint
        from ssdq.quant.quantize import quantize_from_recipe

        fp32 = load_checkpoint(args.model_prefix, args.classes)
        print("wrote %s" % quantize_from_recipe(fp32, args.out, args.recipe))
    elif args.command == "quantize":
        from ssdq.model.checkpoint import load_checkpoint
        from ssdq.quant.quantize import quantize

        fp32 = load_checkpoint(args.model_prefix, args.classes)
        calib_set = _open_data(args, calibration=True)
        quantize(fp32, args.out, calib_set, calib_mode=args.calib_mode,
                 num_calib_batches=args.num_calib_batches, batch_size=args.batch_size,
                 exclude_layers=args.exclude_layers, exclude_match=args.exclude_match,
                 exclude_ops=args.exclude_ops, percentile=args.percentile, preset=args.preset,
                 num_workers=args.num_workers, progress=progress)
        print("wrote %s" % args.out)
    elif args.command in ("sensitivity", "tune"):
        _accuracy_tools(args, progress)
    elif args.command == "eval":
        from ssdq.model.checkpoint import load_checkpoint, resolve_prefix
        from ssdq.eval.evaluate import evaluate_checkpoint, format_result
        from ssdq.fileio import write_json

        ckpt = load_checkpoint(resolve_prefix(args.model_prefix), args.classes, args.params)
        dataset = _open_data(args)
        if args.shards < 1:
            raise SsdqError("--shards must be at least 1")
        engine = _engine(args) if args.ray or args.shards > 1 else None
        try:
            result = evaluate_checkpoint(ckpt, dataset, args.batch_size, args.num_workers,
                                         progress, shards=args.shards, engine=engine,
                                         backend=args.backend)
        finally:
            if engine is not None:
                engine.close()
        print(format_result(result))
        if args.out:
            write_json(args.out, dict(result, threads=threads))
    elif args.command == "bench":
        _bench(args, progress)
    elif args.command == "export":
        from ssdq.backends.onnx_export import export_onnx

        print("wrote %s" % export_onnx(args.model_prefix, args.out, per_channel=not args.per_tensor))
    elif args.command == "finetune":
        _finetune(args, progress)
    elif args.command in ("prune", "lowrank") or getattr(args, "study", None) == "prune":
        _prune_commands(args, progress)
    elif args.command == "study":
        from ssdq.compress.formats.study import run_study

        _data_root(args)
        engine = _engine(args)
        try:
            run_study(args.study, vars(args), threads=threads, progress=progress, engine=engine)
        finally:
            engine.close()
    elif args.command == "reproduce":
        from ssdq.reproduce import reproduce

        reproduce(model=args.model, params_file=args.params, data_root=args.data_root,
                  eval_split=args.split, calib_split=args.calib_split,
                  eval_set=_open_data(args) if _custom_data(args) else None,
                  calib_set=_open_data(args, calibration=True) if _custom_data(args) else None,
                  calib_mode=args.calib_mode, num_calib_batches=args.num_calib_batches,
                  batch_size=args.batch_size, num_workers=args.num_workers,
                  exclude_match=args.exclude_match, model_dir=args.model_dir,
                  out_dir=args.out_dir, threads=threads, progress=progress,
                  backends=args.backends)
    return 0


def _accuracy_tools(args, progress):
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.quant.sensitivity import Int8Variants

    fp32 = load_checkpoint(args.model_prefix, args.classes)
    eval_set = _open_data(args)
    if args.eval_images:
        eval_set = eval_set.subset(args.eval_images)
    variants = Int8Variants(fp32, _open_data(args, calibration=True),
                            eval_set, num_calib_batches=args.num_calib_batches,
                            batch_size=args.batch_size, exclude_match=args.exclude_match,
                            num_workers=args.num_workers, progress=progress)
    out = args.out_dir
    engine = _engine(args)
    try:
        _run_accuracy_tool(args, variants, engine, out, progress)
    finally:
        engine.close()


def _run_accuracy_tool(args, variants, engine, out, progress):
    from ssdq.fileio import write_json, write_text

    if args.command == "sensitivity":
        from ssdq.quant.sensitivity import analyse, markdown_table, plot

        report = analyse(variants, args.calib_mode, with_map=not args.no_map, progress=progress,
                         engine=engine)
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
    from ssdq.quant.tune import calibration_markdown, tune, tune_markdown

    report = tune(variants, args.out, args.max_relative_drop, max_trials=args.max_trials,
                  time_limit_s=args.time_limit, progress=progress, engine=engine)
    write_json(os.path.join(out, "tune.json"), report)
    write_text(os.path.join(out, "tune.md"), tune_markdown(report))
    write_json(os.path.join(out, "calibration.json"),
               {"fp32_map": report["fp32"]["map"], "methods": report["calibration_methods"],
                "eval_images": report["eval_images"]})
    write_text(os.path.join(out, "calibration.md"), "# Calibration methods\n\n%s\n"
               % calibration_markdown(report))
    print(tune_markdown(report))
    print("wrote %s, %s/tune.{json,md}, %s/calibration.{json,md}" % (args.out, out, out))


def _finetune(args, progress):
    from ssdq.compress.formats.finetune import default_out, finetune_and_save
    from ssdq.compress.formats.number_format import NumberFormat
    from ssdq.data.dataset import open_dataset

    NumberFormat(args.number_format)  # a bad spec fails before any data is read
    train_set = open_dataset(_data_root(args), "train", args.dataset_format)
    val_set = open_dataset(args.data_root, "val", args.dataset_format).subset(args.val_images)
    out = args.out or default_out(args.number_format, args.lq_lambda)
    run = finetune_and_save(args.model_prefix, out, train_set, val_set, args.number_format,
                            epochs=args.epochs, lq_lambda=args.lq_lambda,
                            layer_selection=args.layers, fc_layers=args.fc_layers,
                            batch_size=args.train_batch_size, lr=args.lr, seed=args.seed,
                            train_images=args.train_images, num_workers=args.num_workers,
                            progress=progress)
    for entry in run["history"]:
        print(json.dumps(entry))
    print("wrote %s (and %s-finetune.json)" % (out, out))


def _bench(args, progress):
    from ssdq.bench.harness import (bench_checkpoints, benchmark, markdown, write_bench, zoo_checkpoints)
    from ssdq.data.dataset import open_dataset

    image_set = open_dataset(_data_root(args), args.split)
    pruned = None
    if args.widths_from and not args.zoo:
        raise SsdqError("--widths-from needs --zoo (it shapes the zoo architecture)")
    if args.zoo:
        pairs = [zoo_checkpoints(args.zoo, image_set, progress=progress)]
        if args.widths_from:
            pruned = zoo_checkpoints(args.zoo, image_set, progress=progress,
                                     widths_from=args.widths_from,
                                     widths_multiple=args.widths_multiple)
    else:
        pairs = [(args.model_prefix, args.int8_prefix)]
    if any(v is not None for v in (args.instances, args.cores_per_instance, args.mode,
                                   args.instance_cores)):
        from ssdq.bench.multi_instance import markdown as multi_markdown, run_bench

        bench, paths = run_bench(
            image_set, *pairs[0], args.precisions, args.scopes, args.batch_sizes, args.instances,
            args.cores_per_instance, args.mode, args.numa_node, args.instance_cores, args.warmup,
            args.repeats, args.rounds, args.membind, args.strict, args.out, args.zoo, progress)
        print(multi_markdown(bench))
        print("wrote %s" % ", ".join(paths))
        return
    pairs, extra = bench_checkpoints(pairs, args.extra_int8, args.classes, args.params)
    bench = benchmark(pairs, image_set, args.precisions, args.scopes, args.batch_sizes,
                      args.warmup, args.repeats, args.eval_images, args.num_workers, progress,
                      profile=args.profile, extra_int8=extra, backends=args.backends,
                      pruned=pruned)
    paths = write_bench(bench, args.out)
    print(markdown(bench))
    print("wrote %s" % ", ".join(paths))


def _custom_data(args):
    return any(getattr(args, flag, None) for flag in (
        "annotations", "images", "calib_annotations", "calib_images"))


def _show_progress(args):
    """Progress bars only where someone watches: not with --quiet, not into a pipe or file."""
    return not args.quiet and sys.stderr.isatty()


def _data_root(args):
    """``--data-root``; the embedded synthetic set is drawn first when that is the default root
    and nothing is there yet (a fresh clone), so every command runs on the embedded default. A set
    already there is used as it is, whatever its size (``ssdq data synthetic --val N``)."""
    if (os.path.normpath(args.data_root) == os.path.normpath(DEFAULT_DATA_ROOT)
            and not os.path.exists(args.data_root)):
        from ssdq.data.synthetic import ensure_synthetic

        ensure_synthetic(args.data_root, progress=_show_progress(args))
    return args.data_root


def _open_data(args, calibration=False):
    """The dataset the data flags name: evaluation data, or with ``calibration`` the images to
    calibrate on (``--calib-annotations``, else ``--annotations``, else ``--calib-split``)."""
    from ssdq.data.dataset import open_dataset

    annotations, images, split = args.annotations, args.images, getattr(args, "split", None)
    if calibration:
        split = args.calib_split
        if args.calib_images and not args.calib_annotations:
            raise SsdqError("--calib-images DIR needs --calib-annotations FILE (the COCO file "
                            "describing them)")
        if args.calib_annotations:
            annotations, images = args.calib_annotations, args.calib_images
    return open_dataset(args.data_root if annotations else _data_root(args), split,
                        args.dataset_format, annotations=annotations,
                        images=images, class_map=None if calibration else args.class_map,
                        allow_size_mismatch=args.allow_size_mismatch)


def _maybe(value, fmt="%.2f"):
    return "n/a (--no-map)" if value is None else fmt % value


def _data(args):
    if args.data_command == "synthetic":
        from ssdq.data import synthetic

        splits = dict(synthetic.DEFAULT_SPLITS)
        if args.train is not None:
            splits["train"] = args.train
        if args.val is not None:
            splits["val"] = args.val
        if any(n < 1 for n in splits.values()):
            raise SsdqError("each split needs at least one image")
        seed = synthetic.DEFAULT_SEED if args.seed is None else args.seed
        paths = synthetic.ensure_synthetic(args.root, splits, seed=seed,
                                           progress=_show_progress(args))
        for split, path in paths.items():
            print("%s: %s" % (split, path))
    else:
        from ssdq.data.coco import download_coco

        print("COCO val2017 ready in %s" % download_coco(args.root, base_url=args.base_url,
                                                        progress=_show_progress(args)))
    return 0
