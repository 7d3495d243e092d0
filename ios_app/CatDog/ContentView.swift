import CatDogCore
import PhotosUI
import SwiftUI
import UIKit

struct ContentView: View {
    /// One photo's result as shown.
    struct Shown {
        let analysis: Analysis
        let image: UIImage
    }

    @State private var classifier: Classifier?
    @State private var modelProblem: String?  // the model cannot be used: nothing else to do
    @State private var photoProblem: String?  // this photo failed: shown until the next one
    @State private var shown: Shown?
    @State private var busy = false
    @State private var pick: PhotosPickerItem?
    @State private var showCamera = false
    @State private var labels: [String] = []

    var body: some View {
        NavigationStack {
            VStack(spacing: 16) {
                if let modelProblem {
                    Text(modelProblem).foregroundStyle(.red).multilineTextAlignment(.center).padding()
                } else {
                    if let shown {
                        Image(uiImage: shown.image).resizable().scaledToFit().frame(maxHeight: 420)
                        if shown.analysis.verdict == Verdict.neither {
                            // "No cat or dog here" under the plain photo: no percentages, no CAM
                            Text(shown.analysis.text).font(.title.bold()).multilineTextAlignment(.center)
                        } else {
                            Text(headline(probabilities: shown.analysis.probabilities, labels: labels)).font(.title.bold())
                            ForEach(Array(labels.enumerated()), id: \.offset) { i, label in
                                let p = shown.analysis.probabilities[i]
                                HStack { Text(label).frame(width: 44, alignment: .leading); ProgressView(value: p); Text(percentText(p)) }
                            }
                        }
                    } else if classifier == nil {
                        ProgressView("Loading the model…")
                    } else {
                        Text("Take or pick a photo of a cat or a dog.").foregroundStyle(.secondary)
                    }
                    if busy { ProgressView() }
                    if let photoProblem { Text(photoProblem).foregroundStyle(.red).multilineTextAlignment(.center) }
                }
                Spacer()
                HStack {
                    Button { showCamera = true } label: { Label("Camera", systemImage: "camera") }
                        .buttonStyle(.borderedProminent).disabled(classifier == nil || busy)
                    PhotosPicker(selection: $pick, matching: .images) { Label("Photos", systemImage: "photo") }
                        .buttonStyle(.bordered).disabled(classifier == nil || busy)
                }
            }
            .padding()
            .navigationTitle("CatDog")
            .task { await load() }
            .onChange(of: pick) { item in
                guard let item else { return }
                Task {
                    let data = try? await item.loadTransferable(type: Data.self)
                    await run(data)
                    pick = nil
                }
            }
            .sheet(isPresented: $showCamera) {
                CameraView { data in
                    showCamera = false
                    Task { await run(data) }
                }
            }
        }
    }

    private func load() async {
        guard classifier == nil, modelProblem == nil else { return }
        do {
            let loaded = try await Classifier()
            labels = loaded.manifest.labels
            classifier = loaded
        } catch {
            modelProblem = error.localizedDescription
        }
    }

    /// Classifies the photo on the classifier's actor; the main thread only shows the result.
    private func run(_ data: Data?) async {
        guard let classifier else { return }
        guard let data else { photoProblem = "Could not read that photo."; return }
        busy = true
        photoProblem = nil
        defer { busy = false }
        do {
            let analysis = try await classifier.classify(data)
            shown = Shown(analysis: analysis, image: analysis.overlay.uiImage() ?? UIImage())
        } catch {
            photoProblem = error.localizedDescription
        }
    }
}

extension RGBImage {
    /// A UIImage of these pixels (the CGImage owns a copy of them).
    func uiImage() -> UIImage? {
        guard let provider = CGDataProvider(data: Data(rgba()) as CFData), let srgb = CGColorSpace(name: CGColorSpace.sRGB),
              let cg = CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: 4 * width,
                               space: srgb, bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
                               provider: provider, decode: nil, shouldInterpolate: true, intent: .defaultIntent) else { return nil }
        return UIImage(cgImage: cg)
    }
}
