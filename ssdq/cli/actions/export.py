"""What ``ssdq export`` does; its flags are ``cli/commands/export.py``'s."""
from ssdq.backends.onnx_export import export_onnx


def run(args, context):
    print("wrote %s" % export_onnx(args.model_prefix, args.out, per_channel=not args.per_tensor))
