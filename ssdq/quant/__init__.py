"""ssdq.quant"""
