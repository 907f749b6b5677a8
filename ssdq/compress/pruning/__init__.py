"""ssdq.compress.pruning"""
