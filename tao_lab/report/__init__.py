"""What a person looks at: plots (curves, score timelines, sweep comparisons), overlay frames and annotated video,
and the self-contained HTML report of an inference run. matplotlib and OpenCV are imported inside the functions.
"""
