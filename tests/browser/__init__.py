"""The studio in Debian's Chromium through Playwright: the canvas, tabs, Live, recall and text models."""
