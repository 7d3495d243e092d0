import AVFoundation
import SwiftUI
import UIKit

/// Full-screen camera (AVFoundation): live preview and a shutter button; hands back the photo's
/// encoded data (with its EXIF orientation, which the classifier applies).
struct CameraView: UIViewControllerRepresentable {
    let onPhoto: @MainActor (Data?) -> Void

    func makeUIViewController(context: Context) -> CameraController {
        let controller = CameraController()
        controller.onPhoto = onPhoto
        return controller
    }

    func updateUIViewController(_ controller: CameraController, context: Context) {}
}

/// The capture session, started and stopped on its own serial queue, never the main thread.
/// AVCaptureSession is documented as safe to drive from one such queue.
final class CaptureSession: @unchecked Sendable {
    let session = AVCaptureSession()
    let output = AVCapturePhotoOutput()
    private let queue = DispatchQueue(label: "catdog.camera")

    func start() { queue.async { self.session.startRunning() } }
    func stop() { queue.async { self.session.stopRunning() } }
}

/// UIKit's view controllers are main-actor types; the photo delegate callback arrives on another
/// queue, so it is `nonisolated` and hops back to the main actor with plain values only.
final class CameraController: UIViewController, AVCapturePhotoCaptureDelegate {
    var onPhoto: (@MainActor (Data?) -> Void)?
    private let capture = CaptureSession()

    override func viewDidLoad() {
        super.viewDidLoad()
        view.backgroundColor = .black
        Task { @MainActor in
            if await AVCaptureDevice.requestAccess(for: .video) { start() } else { denied() }
        }
    }

    override func viewWillDisappear(_ animated: Bool) {
        super.viewWillDisappear(animated)
        capture.stop()
    }

    private func start() {
        let session = capture.session, output = capture.output
        guard let camera = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: camera), session.canAddInput(input), session.canAddOutput(output) else {
            return denied()
        }
        session.beginConfiguration()
        session.sessionPreset = .photo
        session.addInput(input)
        session.addOutput(output)
        session.commitConfiguration()
        let preview = AVCaptureVideoPreviewLayer(session: session)
        preview.frame = view.bounds
        preview.videoGravity = .resizeAspectFill
        view.layer.addSublayer(preview)
        let shutter = UIButton(type: .system, primaryAction: UIAction { [weak self] _ in
            guard let self else { return }
            self.capture.output.capturePhoto(with: AVCapturePhotoSettings(), delegate: self)
        })
        shutter.setImage(UIImage(systemName: "circle.inset.filled", withConfiguration: UIImage.SymbolConfiguration(pointSize: 64)), for: .normal)
        shutter.tintColor = .white
        shutter.translatesAutoresizingMaskIntoConstraints = false
        view.addSubview(shutter)
        NSLayoutConstraint.activate([
            shutter.centerXAnchor.constraint(equalTo: view.centerXAnchor),
            shutter.bottomAnchor.constraint(equalTo: view.safeAreaLayoutGuide.bottomAnchor, constant: -24),
        ])
        capture.start()
    }

    private func denied() {
        let label = UILabel()
        label.text = "Camera access is off: allow it in Settings > CatDog, or pick a photo instead."
        label.textColor = .white
        label.numberOfLines = 0
        label.frame = view.bounds.insetBy(dx: 24, dy: 24)
        view.addSubview(label)
    }

    nonisolated func photoOutput(_ output: AVCapturePhotoOutput, didFinishProcessingPhoto photo: AVCapturePhoto, error: Error?) {
        let data = error == nil ? photo.fileDataRepresentation() : nil
        Task { @MainActor in
            self.capture.stop()
            self.onPhoto?(data)
        }
    }
}
