"""ssdq.model"""
