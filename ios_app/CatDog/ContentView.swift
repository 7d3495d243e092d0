import PhotosUI
import SwiftUI

struct ContentView: View {
    @State private var classifier: Classifier?
    @State private var problem: String?
    @State private var result: Classifier.Result?
    @State private var pick: PhotosPickerItem?
    @State private var showCamera = false

    var body: some View {
        NavigationStack {
            VStack(spacing: 16) {
                if let problem {
                    Text(problem).foregroundStyle(.red).multilineTextAlignment(.center).padding()
                } else if let result {
                    Image(uiImage: result.overlay).resizable().scaledToFit().frame(maxHeight: 420)
                    Text("It's a \(result.label)").font(.title.bold())
                    ForEach(result.probabilities.sorted(by: { $0.key < $1.key }), id: \.key) { label, p in
                        HStack { Text(label).frame(width: 44, alignment: .leading); ProgressView(value: p); Text(String(format: "%.1f %%", 100 * p)) }
                    }
                } else {
                    Text("Take or pick a photo of a cat or a dog.").foregroundStyle(.secondary)
                }
                Spacer()
                HStack {
                    Button { showCamera = true } label: { Label("Camera", systemImage: "camera") }
                        .buttonStyle(.borderedProminent).disabled(classifier == nil)
                    PhotosPicker(selection: $pick, matching: .images) { Label("Photos", systemImage: "photo") }
                        .buttonStyle(.bordered).disabled(classifier == nil)
                }
            }
            .padding()
            .navigationTitle("CatDog")
            .task { load() }
            .onChange(of: pick) { item in
                Task {
                    if let data = try? await item?.loadTransferable(type: Data.self), let photo = UIImage(data: data) { run(photo) }
                }
            }
            .sheet(isPresented: $showCamera) { CameraView { photo in showCamera = false; run(photo) } }
        }
    }

    private func load() {
        do { classifier = try Classifier() } catch { problem = error.localizedDescription }
    }

    private func run(_ photo: UIImage) {
        guard let classifier else { return }
        do { result = try classifier.classify(photo) } catch { problem = error.localizedDescription }
    }
}
