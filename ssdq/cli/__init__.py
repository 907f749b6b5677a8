"""ssdq.cli"""
