"""ssdq.report"""
