"""A one-connection MJPEG-over-HTTP stream server for the reconnect test (run as a separate process).

    python tests/mjpeg_server.py VIDEO PORT START STOP [FPS]

Serves frames [START, STOP) of VIDEO as multipart/x-mixed-replace JPEGs to the first client on 127.0.0.1:PORT,
then closes the connection and exits: to the client, the stream drops.
"""
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import cv2


def main(video: str, port: int, start: int, stop: int, fps: float = 100.0) -> None:
    cap = cv2.VideoCapture(video)
    frames = []
    for i in range(stop):
        ok, f = cap.read()
        if not ok:
            break
        if i >= start:
            frames.append(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpg in frames:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg))
                self.wfile.write(jpg + b"\r\n")
                time.sleep(1.0 / fps)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.handle_request()
    server.server_close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *(float(a) for a in sys.argv[5:]))
