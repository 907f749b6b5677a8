"""What ``ssdq qat`` does; its flags are ``cli/commands/qat.py``'s."""
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.model.convert import network_from
from ssdq.options import at_least
from ssdq.quant.options import CalibOptions, QatOptions
from ssdq.quant.qat import qat
from ssdq.quant.quantize import open_calibration_set


def run(args, context):
    at_least(args, "eval_images")
    options = QatOptions.from_args(args)
    options.check()
    data, calib = DataOptions.from_args(args), CalibOptions.from_args(args)
    net, source = network_from(options.params)
    select_set = open_data(data, options.select_split, context.progress) \
        .subset(args.eval_images) if options.select_split != "none" else None
    qat(args.out, net, source, open_data(data, "train", context.progress),
        open_calibration_set(calib, data),
        open_data(data, args.split, context.progress).subset(args.eval_images), options, calib,
        select_set=select_set, batch_size=args.batch_size, num_workers=args.num_workers,
        progress=context.progress)
    print("wrote %s (int8), %s-fp32, %s-qat.json" % (args.out, args.out, args.out))
