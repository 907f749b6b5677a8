"""ssdq.eval"""
