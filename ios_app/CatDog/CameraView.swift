import AVFoundation
import SwiftUI

/// Full-screen camera (AVFoundation): live preview and a shutter button; returns the photo.
struct CameraView: UIViewControllerRepresentable {
    let onPhoto: (UIImage) -> Void

    func makeUIViewController(context: Context) -> CameraController {
        let controller = CameraController()
        controller.onPhoto = onPhoto
        return controller
    }

    func updateUIViewController(_ controller: CameraController, context: Context) {}
}

final class CameraController: UIViewController, AVCapturePhotoCaptureDelegate {
    var onPhoto: ((UIImage) -> Void)?
    private let session = AVCaptureSession()
    private let output = AVCapturePhotoOutput()

    override func viewDidLoad() {
        super.viewDidLoad()
        view.backgroundColor = .black
        AVCaptureDevice.requestAccess(for: .video) { granted in
            DispatchQueue.main.async { granted ? self.start() : self.denied() }
        }
    }

    private func start() {
        guard let camera = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: .back),
              let input = try? AVCaptureDeviceInput(device: camera), session.canAddInput(input), session.canAddOutput(output) else {
            return denied()
        }
        session.sessionPreset = .photo
        session.addInput(input)
        session.addOutput(output)
        let preview = AVCaptureVideoPreviewLayer(session: session)
        preview.frame = view.bounds
        preview.videoGravity = .resizeAspectFill
        view.layer.addSublayer(preview)
        let shutter = UIButton(type: .system, primaryAction: UIAction { [weak self] _ in
            guard let self else { return }
            self.output.capturePhoto(with: AVCapturePhotoSettings(), delegate: self)
        })
        shutter.setImage(UIImage(systemName: "circle.inset.filled", withConfiguration: UIImage.SymbolConfiguration(pointSize: 64)), for: .normal)
        shutter.tintColor = .white
        shutter.translatesAutoresizingMaskIntoConstraints = false
        view.addSubview(shutter)
        NSLayoutConstraint.activate([
            shutter.centerXAnchor.constraint(equalTo: view.centerXAnchor),
            shutter.bottomAnchor.constraint(equalTo: view.safeAreaLayoutGuide.bottomAnchor, constant: -24),
        ])
        DispatchQueue.global(qos: .userInitiated).async { self.session.startRunning() }
    }

    private func denied() {
        let label = UILabel()
        label.text = "Camera access is off: allow it in Settings > CatDog."
        label.textColor = .white
        label.numberOfLines = 0
        label.frame = view.bounds.insetBy(dx: 24, dy: 24)
        view.addSubview(label)
    }

    func photoOutput(_ output: AVCapturePhotoOutput, didFinishProcessingPhoto photo: AVCapturePhoto, error: Error?) {
        session.stopRunning()
        if let data = photo.fileDataRepresentation(), let image = UIImage(data: data) { onPhoto?(image) }
    }
}
