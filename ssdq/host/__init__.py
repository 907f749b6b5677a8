"""ssdq.host"""
