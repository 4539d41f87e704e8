import DBus
import Testing

@Suite("Validated names")
struct NamesTests {
    @Test(arguments: ["/", "/org", "/org/shadowcopy/ShadowCopy1", "/a_b/C9/_"])
    func validObjectPaths(_ path: String) {
        #expect(ObjectPath(path)?.rawValue == path)
    }

    @Test(arguments: ["", "org", "/org/", "//", "/org//x", "/org/sh-adow", "/org/ü", "/org/a.b", "/../etc", "/a b"])
    func invalidObjectPaths(_ path: String) {
        #expect(ObjectPath(path) == nil)
    }

    @Test func pathRelations() {
        let root: ObjectPath = "/org/shadowcopy/ShadowCopy1"
        #expect(ObjectPath(v("/org/shadowcopy/ShadowCopy1/writers/ab"))!.isDescendant(of: root))
        #expect(!ObjectPath(v("/org/shadowcopy/ShadowCopy10"))!.isDescendant(of: root))
        #expect(!root.isDescendant(of: root))
        #expect(root.isDescendant(of: .root))
        #expect(root.appending("writers")?.rawValue == "/org/shadowcopy/ShadowCopy1/writers")
        #expect(root.appending("bad/element") == nil)
    }

    @Test func interfaceAndErrorNames() {
        #expect(InterfaceName(v("org.shadowcopy.ShadowCopy1.Coordinator")) != nil)
        #expect(InterfaceName(v("org")) == nil)
        #expect(InterfaceName(v("org..x")) == nil)
        #expect(InterfaceName(v("org.1x")) == nil)
        #expect(InterfaceName(v("org.sh-adow")) == nil)
        #expect(InterfaceName(String(repeating: "a.", count: 128) + "b") == nil)
        #expect(ErrorName(v("org.shadowcopy.ShadowCopy1.Error.NotSupported")) != nil)
        #expect(ErrorName(v("NotSupported")) == nil)
    }

    @Test func busNames() {
        #expect(BusName(v(":1.42"))?.isUnique == true)
        #expect(BusName(v(":1.4-2")) != nil)
        #expect(BusName(v("org.shadowcopy.ShadowCopy1"))?.isUnique == false)
        #expect(BusName(v("org.shadow-copy.x")) != nil)
        #expect(BusName(v("org.1x")) == nil)
        #expect(BusName(v("org")) == nil)
        #expect(BusName(v(":")) == nil)
        #expect(BusName(v("")) == nil)
    }

    @Test func memberNames() {
        #expect(MemberName(v("RegisterWriter")) != nil)
        #expect(MemberName(v("_x9")) != nil)
        #expect(MemberName(v("9x")) == nil)
        #expect(MemberName(v("a.b")) == nil)
        #expect(MemberName(v("")) == nil)
        #expect(MemberName(String(repeating: "a", count: 256)) == nil)
    }
}

@Suite("Signatures")
struct SignatureTests {
    @Test(arguments: ["", "s", "oa{sv}", "a(ossa{sv})", "a{oa{sa{sv}}}", "aaai", "(i(i(i)))", "vh", "ya{yv}"])
    func valid(_ text: String) {
        #expect(Signature(text)?.rawValue == text)
    }

    @Test(arguments: ["a", "{sv}", "a{vs}", "a{s}", "a{svs}", "()", "(s", "s)", "z", "a{(s)v}", "(a{sv)}"])
    func invalid(_ text: String) {
        #expect(Signature(text) == nil)
    }

    @Test func nestingLimits() {
        #expect(Signature(String(repeating: "a", count: 32) + "i") != nil)
        #expect(Signature(String(repeating: "a", count: 33) + "i") == nil)
        #expect(Signature(String(repeating: "(", count: 32) + "i" + String(repeating: ")", count: 32)) != nil)
        #expect(Signature(String(repeating: "(", count: 33) + "i" + String(repeating: ")", count: 33)) == nil)
        #expect(Signature(String(repeating: "i", count: 256)) == nil)
    }

    @Test func completeTypes() {
        let signature: Signature = "oa{sv}(ii)as"
        #expect(signature.completeTypes.map(\.rawValue) == ["o", "a{sv}", "(ii)", "as"])
        #expect(!signature.isSingleCompleteType)
        #expect(Signature(v("a{sv}"))!.isSingleCompleteType)
    }
}

/// A string that is not a literal, so the failable validating initialisers are the ones called.
private func v(_ text: String) -> String { text }
