"""ssdq.compress.formats"""
