import Foundation

/// The predicted label: the first largest probability (a tie goes to the first label).
public func topLabel(probabilities: [Float], labels: [String]) -> (label: String, index: Int, probability: Float) {
    var index = 0
    for i in probabilities.indices where probabilities[i] > probabilities[index] { index = i }
    return (labels[index], index, probabilities[index])
}

/// "99.6 %": 100 * p in double, one decimal, rounded correctly (half to even on an exact tie),
/// as `catdog.cam.label_text` and C's printf do.
public func percentText(_ p: Float) -> String {
    String(format: "%.1f %%", 100 * Double(p))
}

/// "It's a cat"
public func headline(probabilities: [Float], labels: [String]) -> String {
    "It's a \(topLabel(probabilities: probabilities, labels: labels).label)"
}

/// What the app shows under the photo, `catdog.cam.label_text`: the headline, then each label's
/// per cent, e.g. "It's a cat\ncat 99.6 %   dog 0.4 %".
public func labelText(probabilities: [Float], labels: [String]) -> String {
    let line = zip(labels, probabilities).map { "\($0) \(percentText($1))" }.joined(separator: "   ")
    return headline(probabilities: probabilities, labels: labels) + "\n" + line
}
