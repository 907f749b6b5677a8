"""ssdq.train"""
