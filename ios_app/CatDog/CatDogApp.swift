import SwiftUI

@main
struct CatDogApp: App {
    var body: some Scene {
        WindowGroup { ContentView() }
    }
}
