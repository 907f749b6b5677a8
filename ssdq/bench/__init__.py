"""ssdq.bench"""
