"""Metrics (torch-free): COCO AP/AR through pycocotools."""
